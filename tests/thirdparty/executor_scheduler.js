"use strict";
// A mesos-framework Scheduler that launches one task on a custom executor: the
// library's Executor in executor.js, run by `node executor.js` as
// ExecutorInfo.command. The library's own OFFERS handler always sends a
// CommandInfo with the task, so this scheduler overrides OFFERS (the README's
// `handlers` mechanism) and accepts with the library's accept().
//
//   node executor_scheduler.js <master host:port> <log dir>
//
// The last stdout line is "SUMMARY " and a JSON object; exit 0 once the task
// ended TASK_FINISHED, 1 otherwise.

var path = require("path");
var Scheduler = require("mesos-framework").Scheduler;
var Mesos = require("mesos-framework").Mesos.getMesos();

var DEADLINE_MS = parseInt(process.env.THIRDPARTY_DEADLINE_MS || "90000", 10);
var master = (process.argv[2] || "127.0.0.1:5050").split(":");
var logDir = process.argv[3] || ".";
var TASK_ID = "executor-task-1";
var EXECUTOR_ID = "mesos-framework-executor";

var summary = { framework_id: null, task_id: TASK_ID, executor_id: EXECUTOR_ID, states: [], messages: [],
                errors: [], errors_after_teardown: [], torn_down: false };
var launched = false;
var finished = false;
var tearingDown = false;

function scalar(name, value) {
    return new Mesos.Resource(name, Mesos.Value.Type.SCALAR, new Mesos.Value.Scalar(value));
}

var scheduler = new Scheduler({
    "masterUrl": master[0],
    "port": parseInt(master[1], 10),
    "frameworkName": "thirdparty-mesos-framework-js-executor",
    "logging": { "path": logDir, "fileName": "mesos-framework-executor.log", "level": "info" },
    "restartStates": [],
    "masterConnectionTimeout": 60,
    "handlers": {
        "OFFERS": function (offers) {
            var self = this;
            offers.offers.forEach(function (offer) {
                if (launched) {
                    self.decline([offer.id], null);
                    return;
                }
                launched = true;
                var executorInfo = new Mesos.ExecutorInfo(
                    new Mesos.ExecutorID(EXECUTOR_ID), null,
                    new Mesos.CommandInfo(null, null, true, "exec node " + path.join(__dirname, "executor.js"), null, null));
                executorInfo.resources = [scalar("cpus", 0.1), scalar("mem", 64)];
                executorInfo.name = "mesos-framework executor";
                var task = new Mesos.TaskInfo("executor-task", new Mesos.TaskID(TASK_ID), offer.agent_id,
                                              [scalar("cpus", 0.1), scalar("mem", 32)], executorInfo);
                var launch = new Mesos.Offer.Operation(Mesos.Offer.Operation.Type.LAUNCH,
                                                       new Mesos.Offer.Operation.Launch([task]));
                self.accept([offer.id], [launch], null);
            });
        }
    }
});

function finish(code) {
    if (finished) {
        return;
    }
    finished = true;
    var exit = function () {
        process.stdout.write("SUMMARY " + JSON.stringify(summary) + "\n", function () { process.exit(code); });
    };
    if (!summary.framework_id) {
        return exit();
    }
    tearingDown = true;
    scheduler.once("sent_teardown", function () { summary.torn_down = true; exit(); });
    scheduler.teardown();
    setTimeout(exit, 10000);
}

scheduler.on("subscribed", function (obj) { summary.framework_id = obj.frameworkId; });

scheduler.on("update", function (update) {
    var status = update.status;
    if (status.task_id.value !== TASK_ID) {
        return;
    }
    summary.states.push(status.state);
    summary.messages.push(status.message || "");
    if (status.state === "TASK_FINISHED") {
        finish(0);
    } else if (["TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_KILLED", "TASK_DROPPED"].indexOf(status.state) > -1) {
        finish(1);
    }
});

scheduler.on("error", function (error) {
    var text = error && error.message ? error.message : JSON.stringify(error);
    (tearingDown ? summary.errors_after_teardown : summary.errors).push(text);
});

scheduler.on("ready", function () { scheduler.subscribe(); });

setTimeout(function () {
    summary.errors.push("deadline: the task did not finish within " + DEADLINE_MS + " ms");
    finish(1);
}, DEADLINE_MS);
