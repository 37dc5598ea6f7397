// Heap used by the firmware's code under real MicroPython (the WebAssembly port, 32-bit like
// the ESP32-C3): main.py compiled, and feeder_logic imported, each measured after a
// gc.collect(). Prints "main.py <bytes>" and "feeder_logic <bytes>". A guard against bloat on
// a board with about 150-200 KB of MicroPython heap, not a precise device figure.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const firmware = join(dirname(fileURLToPath(import.meta.url)), "..");
const mp = await loadMicroPython({ stdout: (line) => process.stdout.write(line + "\n") });
mp.FS.mkdir("/firmware");
for (const name of ["feeder_logic.py", "main.py"]) {
  mp.FS.writeFile(`/firmware/${name}`, readFileSync(join(firmware, name), "utf8"));
}
mp.runPython(
  [
    "import sys, gc",
    "sys.path.insert(0, '/firmware')",
    "gc.collect()",
    "before = gc.mem_alloc()",
    "code = compile(open('/firmware/main.py').read(), 'main.py', 'exec')",
    "gc.collect()",
    "compiled = gc.mem_alloc()",
    "import feeder_logic",
    "gc.collect()",
    "print('main.py', compiled - before)",
    "print('feeder_logic', gc.mem_alloc() - compiled)",
  ].join("\n"),
);
