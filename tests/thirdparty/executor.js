"use strict";
// A custom executor written with the npm library `mesos-framework` (its Executor
// class, as its README documents), launched by executor_scheduler.js through
// ExecutorInfo.command. It subscribes to $MESOS_AGENT_ENDPOINT over Mesos' v1
// executor HTTP API, answers each LAUNCH with TASK_RUNNING then TASK_FINISHED,
// and exits on SHUTDOWN (or on an error: Mesos' docs ask an executor to abort).

var crypto = require("crypto");
var Executor = require("mesos-framework").Executor;

function status(task, state, message) {
    return {
        "task_id": task.task_id,
        "state": state,
        "source": "SOURCE_EXECUTOR",
        "message": message,
        "executor_id": { "value": process.env.MESOS_EXECUTOR_ID },
        // Every executor update carries a fresh UUID (bytes, base64 in JSON).
        "uuid": crypto.randomBytes(16).toString("base64")
    };
}

// The library calls a default handler only for the scheduler's events, so an
// executor names a handler (one argument each) for every event it can get.
var executor = new Executor({
    "handlers": {
        "SUBSCRIBED": function (subscribed) {
            console.log("subscribed to agent " + subscribed.agent_info.id.value);
        },
        "LAUNCH": function (launched) {
            var task = launched.task;
            executor.update(status(task, "TASK_RUNNING", "running in a mesos-framework executor"));
            setTimeout(function () {
                executor.update(status(task, "TASK_FINISHED", "hi from a mesos-framework executor"));
            }, 500);
        },
        "KILL": function (killed) {
            executor.update(status({ "task_id": killed.task_id }, "TASK_KILLED", "killed"));
        },
        "ACKNOWLEDGED": function (acknowledged) {
            console.log("acknowledged " + acknowledged.task_id.value);
        },
        "MESSAGE": function (message) {
        },
        "ERROR": function (error) {
            console.error("error event: " + error.message);
        },
        "SHUTDOWN": function (shutdown) {
            process.exit(0);
        }
    }
});

executor.on("error", function (error) {
    console.error("executor error: " + (error && error.message ? error.message : JSON.stringify(error)));
    setTimeout(function () { process.exit(1); }, 1000);
});

executor.subscribe();
