// Runs a Flamenco job type's compileJob outside the Manager and prints the tasks it authored as JSON.
// Only what our job type uses is stood in for: author.Task, author.Command, job.addTask, print.
// Usage: node flamenco_harness.js JOB_TYPE.js SUBMITTED_JOB.json
"use strict";
const fs = require("fs");
const vm = require("vm");

const [scriptPath, jobPath] = process.argv.slice(2);
const tasks = [];
const author = {
    Task(name, type) {
        if (typeof name !== "string" || typeof type !== "string") {
            throw new Error("author.Task(name, type): both are strings");
        }
        const task = { name, type, commands: [] };
        return { addCommand(cmd) { task.commands.push(cmd); }, _task: task };
    },
    Command(name, parameters) { return { name, parameters }; },
};
const sandbox = { author, print() {}, JSON, Math, parseInt, String, Array };
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(scriptPath, "utf8") + "\nthis.JOB_TYPE = JOB_TYPE;", sandbox);
const submitted = JSON.parse(fs.readFileSync(jobPath, "utf8"));
// the Manager fills in every setting's default before compiling
const settings = {};
for (const s of sandbox.JOB_TYPE.settings) {
    if (s.default !== undefined) settings[s.key] = s.default;
}
Object.assign(settings, submitted.settings);
const job = { name: submitted.name, settings, addTask(t) { tasks.push(t._task); } };
try {
    sandbox.compileJob(job);
} catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err) }));
    process.exit(0);
}
process.stdout.write(JSON.stringify({ settings: sandbox.JOB_TYPE.settings.map((s) => s.key), tasks }));
