// `mailsentry config ca`: the local CA behind STLS/POP3S/IMAPS on the client leg — where it is, its
// fingerprint, and how to make mail clients trust it. Creates the CA on first use, like `serve` does.
import { defineCommand } from "citty";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { stateDir } from "../../core/config/paths.ts";
import { ensureCa } from "../../core/tls/ca.ts";
import { UsageError } from "../report.ts";

/** The human-readable answer: path, fingerprint and per-client trust steps. */
export function caInstructions(caCert: string, fingerprint: string): string {
  return `mailsentry local CA (used for STLS, STARTTLS, POP3S and IMAPS between your mail client and mailsentry)

  Certificate:  ${caCert}
  SHA-256:      ${fingerprint}

Check the fingerprint when a client shows it, then trust the certificate in the client you use:

  System store (Debian/Ubuntu):
    sudo cp ${caCert} /usr/local/share/ca-certificates/mailsentry.crt && sudo update-ca-certificates
  Thunderbird:
    Settings › Privacy & Security › Certificates › Manage Certificates › Authorities › Import…
    choose ${caCert}, tick "Trust this CA to identify websites" (used for mail servers too)
  fetchmail:
    --sslcertfile ${caCert} --sslcertck   (or in .fetchmailrc: sslcertfile "${caCert}" sslcertck)
    fetchmail checks DNS names only: poll "localhost", not 127.0.0.1 (or add: sslcommonname localhost)
  curl:
    --cacert ${caCert}
  mbsync (isync):
    CertificateFile ${caCert}

The private key stays in the same directory, readable only by you; whoever holds it can impersonate
any server to clients that trust this CA. Export the certificate elsewhere with --export FILE.
`;
}

export default defineCommand({
  meta: { name: "ca", description: "Show the local CA's path and fingerprint and how to trust it" },
  args: {
    export: { type: "string", description: "Write the CA certificate (PEM) to this file", valueHint: "file" },
    pem: { type: "boolean", description: "Print only the CA certificate (PEM)" },
  },
  async run({ args }) {
    if (args.export === "") throw new UsageError("--export needs a file name");
    const ca = await ensureCa(stateDir());
    if (args.export !== undefined) {
      const target = resolve(args.export);
      await writeFile(target, ca.certPem, { mode: 0o644 });
      if (!args.pem) process.stdout.write(`Wrote the CA certificate to ${target}\nSHA-256: ${ca.fingerprint}\n`);
    }
    if (args.pem) process.stdout.write(ca.certPem.endsWith("\n") ? ca.certPem : ca.certPem + "\n");
    else if (args.export === undefined) process.stdout.write(caInstructions(ca.paths.caCert, ca.fingerprint));
  },
});
