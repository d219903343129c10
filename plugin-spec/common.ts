import { Type } from '@sinclair/typebox';

/**
 * Schemas of Docker's remote plugin protocol (moby libnetwork `drivers/remote/api`,
 * `ipams/remote/api`): field names exactly as Docker sends them. Request schemas allow extra fields,
 * because newer engines add some; response schemas list every field we send.
 */
export const StringMap = Type.Record(Type.String(), Type.String());

/** Docker sends `null` for an absent map. */
export const OptionalStringMap = Type.Union([StringMap, Type.Null()]);

export const ErrorResponse = Type.Object({ Err: Type.String({ minLength: 1 }) }, { additionalProperties: false });

export const EmptyResponse = Type.Object({}, { additionalProperties: false });

export const ActivateResponse = Type.Object({
  Implements: Type.Array(Type.Union([Type.Literal('NetworkDriver'), Type.Literal('IpamDriver')])),
});

