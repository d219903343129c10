import { describe, expect, it } from 'vitest';
import { allocateFromBlock, allocateOrdinal, blockProblems, freeCount, newBlock, releaseFromBlock } from '../src/domain/allocation-block.js';
import { parseCidr } from '../src/domain/cidr.js';
import { decodeBlock, encodeValue } from '../src/adapters/datastore/etcd/codec.js';

const attr = (handle: string) => ({ handle_id: handle, secondary: { node: 'n1' } });
const fresh = () => newBlock(parseCidr('10.0.0.0/26'), 'host:n1', 1_795_000_000_000_000_000n);

describe('allocation block', () => {
  it('hands out ordinals from the head of unallocated and reuses the longest-free first', () => {
    const { block, ordinals } = allocateFromBlock(fresh(), [attr('a'), attr('b'), attr('c')]);
    expect(ordinals).toEqual([0, 1, 2]);
    const { block: released } = releaseFromBlock(block, [{ ordinal: 1 }]);
    const { ordinals: next } = allocateFromBlock(released, [attr('d')]);
    expect(next).toEqual([3]);
    expect(released.unallocated.at(-1)).toBe(1);
    expect(blockProblems(released, 64)).toEqual([]);
  });

  it('never changes the block it was given', () => {
    const original = fresh();
    const copy = JSON.parse(encodeValue(original));
    allocateFromBlock(original, [attr('a')]);
    expect(JSON.parse(encodeValue(original))).toEqual(copy);
  });

  it('compacts attributes when an allocation goes and keeps indexes valid', () => {
    const { block } = allocateFromBlock(fresh(), [attr('a'), attr('b'), attr('c')]);
    const { block: after, released } = releaseFromBlock(block, [{ ordinal: 0 }]);
    expect(released.map((r) => r.handleId)).toEqual(['a']);
    expect(after.attributes.map((a) => a.handle_id)).toEqual(['b', 'c']);
    expect(after.allocations.slice(0, 3)).toEqual([null, 0, 1]);
    expect(blockProblems(after, 64)).toEqual([]);
  });

  it('refuses an explicit ordinal that is taken', () => {
    const block = allocateOrdinal(fresh(), 7, attr('a'), '10.0.0.7');
    expect(() => allocateOrdinal(block, 7, attr('b'), '10.0.0.7')).toThrow(/already assigned/);
    expect(freeCount(block)).toBe(63);
  });

  it('refuses a release whose sequence number is stale (ABA) and leaves the block as it was', () => {
    const { block } = allocateFromBlock(fresh(), [attr('old')]);
    const oldSequence = block.sequenceNumberForAllocation!['0']!;
    const { block: freed } = releaseFromBlock(block, [{ ordinal: 0 }]);
    const reused = allocateOrdinal(freed, 0, attr('new'), '10.0.0.0');
    expect(() => releaseFromBlock(reused, [{ ordinal: 0, sequenceNumber: oldSequence }])).toThrow(/re-allocated/);
    expect(() => releaseFromBlock(reused, [{ ordinal: 0, handleId: 'old' }])).toThrow(/belongs to handle new/);
    expect(releaseFromBlock(reused, [{ ordinal: 0, handleId: 'new' }]).released).toHaveLength(1);
  });

  it('releases the same ordinal listed twice only once, and a free one not at all', () => {
    const { block } = allocateFromBlock(fresh(), [attr('a')]);
    const { block: after, released } = releaseFromBlock(block, [{ ordinal: 0 }, { ordinal: 0 }, { ordinal: 5 }]);
    expect(released).toHaveLength(1);
    expect(after.unallocated.filter((o) => o === 0)).toHaveLength(1);
    expect(blockProblems(after, 64)).toEqual([]);
  });

  it("reports each of Calico's block invariants", () => {
    const { block } = allocateFromBlock(fresh(), [attr('a')]);
    expect(blockProblems({ ...block, unallocated: [...block.unallocated, 0] }, 64).join('\n')).toMatch(/both allocated and unallocated/);
    expect(blockProblems({ ...block, unallocated: [...block.unallocated, 5] }, 64).join('\n')).toMatch(/listed twice/);
    expect(blockProblems({ ...block, attributes: [...block.attributes, attr('x')] }, 64).join('\n')).toMatch(/not used/);
    expect(blockProblems({ ...block, allocations: [3, ...block.allocations.slice(1)] }, 64).join('\n')).toMatch(/missing attribute/);
    expect(blockProblems({ ...block, unallocated: block.unallocated.slice(1) }, 64).join('\n')).toMatch(/!= 64/);
  });

  it('keeps uint64 sequence numbers exact through JSON', () => {
    const { block } = allocateFromBlock(fresh(), [attr('a')]);
    const text = encodeValue(block);
    expect(text).toContain('"sequenceNumber":1795000000000000001');
    expect(text).toContain('"sequenceNumberForAllocation":{"0":1795000000000000001}');
    expect(decodeBlock(text)).toEqual(block);
  });
});
