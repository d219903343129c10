/**
 * Every error the daemon and CLI raise on purpose. Callers branch on `code`, never on `message`;
 * `message` is written for an operator, because Docker shows it as `<Subsystem>.<Method>: <message>`.
 */
export type ErrorCode =
  | 'E_INVALID_REQUEST'
  | 'E_NOT_FOUND'
  | 'E_CONFLICT'
  | 'E_ALREADY_EXISTS'
  | 'E_POOL_EXHAUSTED'
  | 'E_ADDRESS_IN_USE'
  | 'E_DATASTORE_UNAVAILABLE'
  | 'E_DATASTORE_FULL'
  | 'E_IN_USE'
  | 'E_DATAPLANE'
  | 'E_SETTINGS';

export class AppError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The request itself is wrong: bad CIDR, unsupported option, wrong type. */
export class InvalidRequestError extends AppError {
  constructor(message: string) {
    super('E_INVALID_REQUEST', message);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string) {
    super('E_NOT_FOUND', message);
  }
}

/** A compare-and-swap lost too many times in a row. */
export class ConflictError extends AppError {
  constructor(message: string) {
    super('E_CONFLICT', message);
  }
}

/** Create of a resource whose key is taken (Calico: `resource already exists: Kind(name)`). */
export class AlreadyExistsError extends AppError {
  constructor(message: string) {
    super('E_ALREADY_EXISTS', message);
  }
}

export class PoolExhaustedError extends AppError {
  constructor(message: string) {
    super('E_POOL_EXHAUSTED', message);
  }
}

export class AddressInUseError extends AppError {
  constructor(message: string) {
    super('E_ADDRESS_IN_USE', message);
  }
}

/** Something still uses the object the caller wants removed. */
export class InUseError extends AppError {
  constructor(message: string) {
    super('E_IN_USE', message);
  }
}

/** The datastore could not be reached, or did not answer in time: trying again later may work. */
export class DatastoreUnavailableError extends AppError {
  constructor(message: string, cause?: unknown) {
    super('E_DATASTORE_UNAVAILABLE', message, { cause });
  }
}

/** The datastore refuses writes until an operator frees space (etcd's space quota): trying again does not help. */
export class DatastoreFullError extends AppError {
  constructor(message: string, cause?: unknown) {
    super('E_DATASTORE_FULL', message, { cause });
  }
}

/** The kernel refused a change (netlink, sysctl, iptables): what was tried, and the errno. */
export class DataplaneError extends AppError {
  constructor(
    readonly op: string,
    readonly errno: string,
    readonly detail: string,
  ) {
    super('E_DATAPLANE', `${op} failed: ${errno}${detail ? ` (${detail})` : ''}`);
  }
}

/** The daemon's own settings are wrong (a managed plugin enabled without a datastore): nothing works until they are mended. */
export class SettingsError extends AppError {
  constructor(message: string) {
    super('E_SETTINGS', message);
  }
}
