/**
 * The human monitor (HMP) basics: info status, info registers, system_reset, system_powerdown,
 * quit. Lines come from a backend (-monitor stdio, or Ctrl-A C on -nographic's mux).
 */

/** What the monitor acts on. */
export interface MonitorTarget {
  status(): string;
  registers(): string;
  reset(): void;
  powerdown(): void;
  quit(): void;
  /** Starts a machine held by -S. */
  cont(): void;
}

export class Monitor {
  #line = "";
  constructor(readonly target: MonitorTarget, readonly write: (s: string) => void) {}

  banner(): void {
    this.write("QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ");
  }

  /** Feeds typed bytes; echoes them and runs complete lines. */
  input(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (b === 13 || b === 10) {
        this.write("\r\n");
        const line = this.#line.trim();
        this.#line = "";
        if (line) this.command(line);
        this.write("(qemu) ");
      } else if (b === 127 || b === 8) {
        if (this.#line.length) {
          this.#line = this.#line.slice(0, -1);
          this.write("\b \b");
        }
      } else if (b >= 32 && b < 127) {
        this.#line += String.fromCharCode(b);
        this.write(String.fromCharCode(b));
      }
    }
  }

  command(line: string): void {
    const [cmd, ...args] = line.split(/\s+/);
    const out = (s: string) => this.write(s.replace(/\n/g, "\r\n") + "\r\n");
    switch (cmd) {
      case "info":
        if (args[0] === "status") return out(`VM status: ${this.target.status()}`);
        if (args[0] === "registers") return out(this.target.registers());
        return out(`info: unsupported info command '${args[0] ?? ""}'`);
      case "cont":
      case "c":
        return this.target.cont();
      case "system_reset":
        return this.target.reset();
      case "system_powerdown":
        return this.target.powerdown();
      case "quit":
      case "q":
        return this.target.quit();
      case "help":
      case "?":
        return out(
          "info status -- show the VM status\ninfo registers -- show the cpu registers\n" +
            "system_reset -- reset the system\nsystem_powerdown -- send system power down event\n" +
            "cont|c -- resume emulation\n" +
            "quit|q -- quit the emulator",
        );
      default:
        return out(`unknown command: '${cmd}'`);
    }
  }
}
