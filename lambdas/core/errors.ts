/**
 * Errors the core raises, each mapped to one Anthropic API error type and HTTP status by the API
 * layer. Messages are shown to API clients as they are, so they must never contain a secret.
 */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

export class CorralError extends Error {
  constructor(
    readonly type: ApiErrorType,
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'CorralError';
  }
}

export class InvalidRequestError extends CorralError {
  constructor(message: string) {
    super('invalid_request_error', 400, message);
  }
}

export class NotFoundError extends CorralError {
  constructor(message: string) {
    super('not_found_error', 404, message);
  }
}

export class ConflictError extends CorralError {
  constructor(message: string) {
    super('invalid_request_error', 409, message);
  }
}

export class AuthenticationError extends CorralError {
  constructor(message = 'invalid x-api-key') {
    super('authentication_error', 401, message);
  }
}

/** A known caller without the right to do this (a signed-in person whose role does not allow it). */
export class PermissionError extends CorralError {
  constructor(message: string) {
    super('permission_error', 403, message);
  }
}

/**
 * A conditional append lost: another writer already holds `position`. The session log raises it
 * instead of overwriting, so a duplicate or stale harness step fails rather than corrupting the log.
 */
export class PositionConflictError extends Error {
  constructor(
    readonly sessionId: string,
    readonly position: number,
  ) {
    super(`position ${position} of session ${sessionId} is already written`);
    this.name = 'PositionConflictError';
  }
}
