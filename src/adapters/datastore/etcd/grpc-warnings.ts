/**
 * gRPC sets the TLS server name to the endpoint's IP, which Node flags as DEP0123 on every connection
 * to https://<ip>:2379 — the usual way etcd is addressed. The warning says nothing an operator can act on.
 */
export function silenceGrpcTlsWarning(): void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}
