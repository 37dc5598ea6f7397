// Runs firmware/mpy_cases.py under real MicroPython: the WebAssembly port from npm, in node.
// Writes feeder_logic.py and mpy_cases.py into MicroPython's in-memory filesystem, imports the
// cases there and runs them. main.py (the hardware glue: machine, network, ... are not in this
// port) is only compiled, so syntax MicroPython lacks fails here too. Prints the harness's "N passed, M failed" and exits non-zero on a
// failure, on a Python error, or when no case ran.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const firmware = join(dirname(fileURLToPath(import.meta.url)), "..");
let output = "";
const mp = await loadMicroPython({
  stdout: (line) => {
    output += line + "\n";
    process.stdout.write(line + "\n");
  },
  stderr: (line) => process.stderr.write(line + "\n"),
});

mp.FS.mkdir("/firmware");
for (const name of ["feeder_logic.py", "mpy_cases.py", "main.py"]) {
  mp.FS.writeFile(`/firmware/${name}`, readFileSync(join(firmware, name), "utf8"));
}

let failed;
try {
  mp.runPython(
    [
      "import sys",
      "sys.path.insert(0, '/firmware')",
      "print('MicroPython', sys.implementation.name, sys.version)",
      "compile(open('/firmware/main.py').read(), 'main.py', 'exec')",
      "print('main.py compiles')",
      "import mpy_cases",
      "_failed = mpy_cases.run()",
    ].join("\n"),
  );
  failed = mp.globals.get("_failed");
} catch (e) {
  process.stderr.write(`run_cases: Python error: ${e}\n`);
  process.exit(2);
}

const summary = output.match(/^(\d+) passed, (\d+) failed$/m);
if (!summary || Number(summary[1]) === 0 || failed !== 0) {
  process.stderr.write("run_cases: the cases did not all pass\n");
  process.exit(1);
}
