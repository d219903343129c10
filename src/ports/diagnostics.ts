/** The files of one `calicoctl node diags` run, then one archive of them. */
export interface DiagnosticsArchive {
  /** Writes one file (a plain name) into the archive's directory. */
  add(file: string, content: string): Promise<void>;
  /** Makes the archive of every file added and removes the directory; resolves with the archive's path. */
  seal(): Promise<string>;
  /** Removes what was written, when no archive can be made. */
  discard(): Promise<void>;
}

/** What the host tells about itself, for diagnostics. Each throws, saying why, when it cannot. */
export interface HostDiagnostics {
  /** A command's standard output; it fails when the command is missing or exits non-zero. */
  command(command: string, args: string[]): Promise<string>;
  /** BIRD's reply to `command` on its control socket, one line a line as birdc prints it. */
  bird(command: string): Promise<string>;
  /** The daemon's systemd journal; it fails when the journal has none. */
  daemonJournal(): Promise<string>;
  /** A file's content. */
  file(path: string): Promise<string>;
}
