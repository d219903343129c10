import { AppError, ConflictError, DatastoreUnavailableError } from '../../domain/errors.js';

type Outcome = 'applied' | 'lostClaims' | 'lostUpdates' | 'unanswered';

/**
 * What became of a node's commits: applied, lost to another writer's (claims, block updates), or
 * unanswered by etcd. A request that runs out of time is told why from those since it came in.
 */
export class CommitTally {
  private readonly counts: Record<Outcome, number> = { applied: 0, lostClaims: 0, lostUpdates: 0, unanswered: 0 };

  count(outcome: Outcome): void {
    this.counts[outcome]++;
  }

  now(): Readonly<Record<Outcome, number>> {
    return { ...this.counts };
  }

  /**
   * Why a request ran out of time, from what became of the commits since `before`: etcd did not
   * answer; it did, but they kept losing to other hosts' (many claiming blocks near each other at
   * once); or they applied, just not this request's yet.
   */
  timedOut(before: Readonly<Record<Outcome, number>>, timeoutMs: number): AppError {
    const since = (what: Outcome): number => this.counts[what] - before[what];
    const timedOut = `IPAM request timed out after ${timeoutMs} ms`;
    const lost = since('lostClaims') + since('lostUpdates');
    if (since('unanswered') === 0 && lost > 0) {
      return new ConflictError(
        `${timedOut}: etcd answered, but this node's writes kept losing to other hosts' meanwhile (${since('lostClaims')} block claim(s) and ${since('lostUpdates')} block update(s) lost: many hosts claiming blocks near each other at once); try again`,
      );
    }
    if (since('unanswered') === 0 && since('applied') > 0) {
      return new DatastoreUnavailableError(`${timedOut}: this node's IPAM queue did not get to it in time (${since('applied')} commit(s) applied meanwhile): an overloaded host or etcd`);
    }
    return new DatastoreUnavailableError(`${timedOut}: etcd is slow or unreachable`);
  }
}
