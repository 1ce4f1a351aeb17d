"use strict";
// A v1 HTTP scheduler written with the npm library `mesos-framework` exactly as its
// README documents (Scheduler options, tasks, "subscribed"/"update" events, kill,
// reconcile, teardown), run against an offerd master unchanged.
//
//   node scheduler.js <master host:port> <log dir>
//
// It launches HELLO_TASKS command tasks (`echo hi; sleep 1`) and one long task
// from offers, kills the long task once it runs, asks the master to reconcile it
// once it is killed, then tears the framework down. The last stdout line is a JSON
// summary prefixed with "SUMMARY " (the library logs to stdout too); exit 0 when
// every expectation was met, 1 otherwise.

var Scheduler = require("mesos-framework").Scheduler;
var Mesos = require("mesos-framework").Mesos.getMesos();

var HELLO_TASKS = 3;
var DEADLINE_MS = parseInt(process.env.THIRDPARTY_DEADLINE_MS || "90000", 10);

var master = (process.argv[2] || "127.0.0.1:5050").split(":");
var logDir = process.argv[3] || ".";

var summary = {
    framework_id: null,
    stream_id: null,
    tasks: {},               // task id -> states seen, in order
    kind: {},                // task id -> "hello" | "long"
    reconciled: [],          // states of updates with reason REASON_RECONCILIATION
    acknowledged: 0,
    accepted: 0,
    errors: [],
    errors_after_teardown: [],   // the stream's end after TEARDOWN, as Mesos ends it too
    torn_down: false
};
var killSent = false;
var reconcileSent = false;
var finished = false;
var tearingDown = false;

function commandInfo(shellCommand) {
    // (uris, environment, shell, value, arguments, user), as the README's example.
    return new Mesos.CommandInfo(null, null, true, shellCommand, null, null);
}

var scheduler = new Scheduler({
    "masterUrl": master[0],
    "port": parseInt(master[1], 10),
    "frameworkName": "thirdparty-mesos-framework-js",
    "logging": { "path": logDir, "fileName": "mesos-framework.log", "level": "info" },
    // Nothing is restarted: each task runs once and ends as the test expects.
    "restartStates": [],
    "masterConnectionTimeout": 60,
    "tasks": {
        "hello": {
            "priority": 1,
            "instances": HELLO_TASKS,
            "commandInfo": commandInfo("echo hi; sleep 1"),
            "resources": { "cpus": 0.1, "mem": 32, "ports": 0, "disk": 0 }
        },
        "long": {
            "priority": 2,
            "instances": 1,
            "commandInfo": commandInfo("sleep 600"),
            "resources": { "cpus": 0.1, "mem": 32, "ports": 0, "disk": 0 }
        }
    }
});

function kindOf(taskId) {
    return taskId.indexOf(".long-") > -1 ? "long" : "hello";
}

function expectationsMet() {
    var ids = Object.keys(summary.tasks);
    var hello = ids.filter(function (id) { return summary.kind[id] === "hello"; });
    var long = ids.filter(function (id) { return summary.kind[id] === "long"; });
    var ended = function (id, state) { return summary.tasks[id].indexOf(state) > -1; };
    return hello.length === HELLO_TASKS && long.length === 1 &&
        hello.every(function (id) { return ended(id, "TASK_RUNNING") && ended(id, "TASK_FINISHED"); }) &&
        ended(long[0], "TASK_RUNNING") && ended(long[0], "TASK_KILLED") &&
        summary.reconciled.length > 0;
}

function finish(code) {
    if (finished) {
        return;
    }
    finished = true;
    var exit = function () {
        process.stdout.write("SUMMARY " + JSON.stringify(summary) + "\n", function () {
            process.exit(code);
        });
    };
    if (!summary.framework_id) {
        return exit();
    }
    tearingDown = true;
    scheduler.once("sent_teardown", function () {
        summary.torn_down = true;
        exit();
    });
    scheduler.teardown();
    setTimeout(exit, 10000);
}

scheduler.on("subscribed", function (obj) {
    summary.framework_id = obj.frameworkId;
    summary.stream_id = obj.mesosStreamId;
});

scheduler.on("sent_accept", function () { summary.accepted++; });
scheduler.on("sent_acknowledge", function () { summary.acknowledged++; });

scheduler.on("update", function (update) {
    var status = update.status;
    var id = status.task_id.value;
    if (status.reason === "REASON_RECONCILIATION") {
        summary.reconciled.push(status.state);
    } else {
        summary.tasks[id] = summary.tasks[id] || [];
        summary.tasks[id].push(status.state);
        summary.kind[id] = kindOf(id);
    }
    if (summary.kind[id] === "long" && status.state === "TASK_RUNNING" && !killSent) {
        killSent = true;
        scheduler.kill(id, status.agent_id.value);
    }
    if (summary.kind[id] === "long" && status.state === "TASK_KILLED" && !reconcileSent) {
        // Explicit reconciliation of a task the master knows has ended: Mesos
        // answers with its latest state, reason REASON_RECONCILIATION.
        reconcileSent = true;
        scheduler.reconcile(id, status.agent_id.value);
    }
    if (expectationsMet()) {
        finish(0);
    }
});

scheduler.on("error", function (error) {
    var text = error && error.message ? error.message : JSON.stringify(error);
    (tearingDown ? summary.errors_after_teardown : summary.errors).push(text);
    scheduler.logger.error("ERROR: " + text);
});

scheduler.on("ready", function () {
    scheduler.subscribe();
});

setTimeout(function () {
    summary.errors.push("deadline: expectations not met within " + DEADLINE_MS + " ms");
    finish(1);
}, DEADLINE_MS);
