// daflow-vfx job type for Flamenco Manager 3 (written by `daflow-vfx flamenco install-job-type DIR`).
//
// Copy into the Manager's scripts/ folder (next to the flamenco-manager executable) and restart the
// Manager. `daflow-vfx submit --farm flamenco` posts jobs of this type; every task runs daflow-vfx
// through the Worker's `exec` command for one chunk of frames, so the Workers need daflow-vfx (set the
// executable setting to its path there) but no Blender.
//
// Lists (the executable's words, the command's options) travel as JSON strings: job settings are
// scalars, and JSON keeps every argument whole, spaces included, with no shell in between.

const JOB_TYPE = {
    label: "DAFlow VFX",
    description: "Motion vectors, retimes and stabilization from daflow-vfx, chunked over frames",
    settings: [
        { key: "command", type: "string", required: true, choices: ["render", "retime", "stabilize"],
          description: "The daflow-vfx command every task runs" },
        { key: "input", type: "string", subtype: "file_path", required: true,
          description: "The plate, as the Workers see it" },
        { key: "output", type: "string", subtype: "hashed_file_path", required: true,
          description: "Output pattern, e.g. /shots/sh010/vectors/sh010.####.exr" },
        { key: "frames", type: "string", required: true,
          description: "Contiguous frame range, e.g. 1001-1100 (retime: output frames)" },
        { key: "chunk_size", type: "int32", default: 10, description: "Frames per task" },
        { key: "options", type: "string", default: "[]",
          description: "JSON list of the command's other options, one item per word" },
        { key: "executable", type: "string", default: "[\"daflow-vfx\"]",
          description: "JSON list of the words that run daflow-vfx on the Workers" },
        { key: "skip_existing", type: "bool", default: true,
          description: "Re-queued tasks keep the frames already written (render)" },
    ],
};

// Commands that must see their whole range in one task (stabilize smooths the camera over it).
const WHOLE_RANGE = ["stabilize"];

function wordList(text, key) {
    let words;
    try {
        words = JSON.parse(text);
    } catch (err) {
        throw "daflow-vfx job: setting " + key + " is not JSON (" + err + ")";
    }
    if (!Array.isArray(words)) {
        throw "daflow-vfx job: setting " + key + " must be a JSON list of strings";
    }
    for (let i = 0; i < words.length; i++) {
        if (typeof words[i] !== "string") {
            throw "daflow-vfx job: setting " + key + " item " + i + " is not a string";
        }
    }
    return words;
}

function frameRange(spec) {
    const match = /^\s*(-?\d+)(?:\s*-\s*(-?\d+))?\s*$/.exec(String(spec));
    if (!match) {
        throw "daflow-vfx job: frames " + spec + " is not a contiguous range such as 1001-1100";
    }
    const first = parseInt(match[1], 10);
    const last = match[2] === undefined ? first : parseInt(match[2], 10);
    if (last < first) {
        throw "daflow-vfx job: frames " + spec + " ends before it starts";
    }
    return [first, last];
}

function taskArguments(settings, executable, options, chunk) {
    const args = executable.slice(1).concat(
        [settings.command, settings.input, "-o", settings.output], options, ["--frames", chunk]);
    if (settings.skip_existing) {
        args.push("--skip-existing");
    }
    return args;
}

function compileJob(job) {
    const settings = job.settings;
    const executable = wordList(settings.executable, "executable");
    const options = wordList(settings.options, "options");
    if (executable.length === 0) {
        throw "daflow-vfx job: setting executable is empty";
    }
    const range = frameRange(settings.frames);
    const whole = WHOLE_RANGE.indexOf(settings.command) >= 0;
    const size = whole ? range[1] - range[0] + 1 : settings.chunk_size;
    if (!(size >= 1)) {
        throw "daflow-vfx job: chunk_size " + settings.chunk_size + " must be 1 or more";
    }
    for (let start = range[0]; start <= range[1]; start += size) {
        const chunk = start + "-" + Math.min(range[1], start + size - 1);
        const task = author.Task(settings.command + "-" + chunk, "misc");
        task.addCommand(author.Command("exec", {
            exe: executable[0],
            args: taskArguments(settings, executable, options, chunk),
        }));
        job.addTask(task);
    }
}
