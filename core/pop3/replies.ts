// POP3 replies as values: a handler returns or throws a Pop3Reply and one boundary writes it. The
// texts a client sees are fixed here and never carry internal details (those go to the log).
import { latin1Bytes } from "./lines.ts";

export class Pop3Reply extends Error {
  constructor(readonly ok: boolean, readonly text: string) {
    super(text);
    this.name = "Pop3Reply";
  }
  /** The wire form, one line with CRLF. */
  bytes(): Uint8Array {
    return latin1Bytes(`${this.ok ? "+OK" : "-ERR"}${this.text ? " " + this.text : ""}\r\n`);
  }
}

export const ok = (text = ""): Pop3Reply => new Pop3Reply(true, text);
export const err = (text: string): Pop3Reply => new Pop3Reply(false, text);

/** Fixed client-visible texts. One uniform login failure, as Dovecot does, so probing learns nothing. */
export const R = {
  greeting: () => ok("mailsentry POP3 proxy ready."),
  authFailed: () => err("[AUTH] Authentication failed."),
  unavailable: () => err("[SYS/TEMP] Mail server unavailable, try again later."),
  noUpstreamTls: () => err("[SYS/PERM] The mail server offers no TLS and mailsentry requires it (upstreamTls: required)."),
  upstreamTlsFailed: () => err("[SYS/PERM] TLS with the mail server failed (certificate not trusted?); see the mailsentry log."),
  unknown: () => err("Unknown command."),
  wrongState: () => err("Command not valid in this state."),
  tooManyBad: () => err("Too many invalid commands."),
  lineTooLong: () => err("Line too long."),
  idle: () => err("Disconnected for inactivity."),
  loginTimeout: () => err("Disconnected: no login in time."),
  scanTempFail: () => err("[SYS/TEMP] Message could not be scanned now, try again later."),
  infectedPartial: () => err("[SYS/PERM] This message contains a virus; retrieve it with RETR for the cleaned copy."),
  tooLarge: () => err("[SYS/PERM] Message is larger than the proxy may scan (maxSpooledMessageSize)."),
  shuttingDown: () => err("[SYS/TEMP] Proxy shutting down."),
  internal: () => err("[SYS/TEMP] Internal proxy error."),
} as const;
