"""The web UI in a real headless Chromium against a real local cluster."""

from __future__ import annotations

import time

import pytest
import requests

from offerd.proto import offerd_pb2 as pb
from tests.webui.conftest import screenshot

pytestmark = pytest.mark.timeout(180)


def wait(driver, predicate, timeout=20.0, message="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate(driver)
            if last:
                return last
        except Exception as exc:  # the page is redrawing under us
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message} (last: {last!r})")


def css(driver, selector):
    return driver.find_elements("css selector", selector)


def text_of(driver, selector) -> str:
    found = css(driver, selector)
    return found[0].text if found else ""


@pytest.fixture(scope="module")
def tasks(ui_cluster):
    cluster, framework = ui_cluster
    scheduler = framework.scheduler
    finished = [scheduler.submit(f"echo hello-from-{name}", task_id=name) for name in ("done-1", "done-2", "done-3")]
    running = [scheduler.submit("sleep 600", task_id=name) for name in ("sleeper-1", "sleeper-2")]
    chatty = scheduler.submit("for i in $(seq 1 400); do echo tick-$i; sleep 0.25; done", task_id="chatty")
    for task_id in finished:
        scheduler.wait_state(task_id, pb.TASK_FINISHED)
    for task_id in running + [chatty]:
        scheduler.wait_state(task_id, pb.TASK_RUNNING)
    return {"finished": finished, "running": running, "chatty": chatty}


def state_counts(state):
    counts = {}
    for group in ("frameworks", "completed_frameworks"):
        for framework in state[group]:
            for key in ("tasks", "unreachable_tasks", "completed_tasks"):
                for task in framework[key]:
                    counts[task["state"]] = counts.get(task["state"], 0) + 1
    return counts


def test_dashboard_numbers_match_state_and_metrics(browser, ui_cluster, tasks):
    cluster, _ = ui_cluster
    browser.get(cluster.master_url + "/#/")
    wait(browser, lambda d: text_of(d, '[data-count="TASK_FINISHED"] .value') == "3", message="3 finished tasks")
    wait(browser, lambda d: text_of(d, '[data-count="TASK_RUNNING"] .value') == "3", message="3 running tasks")
    state = cluster.state()
    metrics = requests.get(cluster.master_url + "/metrics/snapshot", timeout=5).json()
    counts = state_counts(state)
    for name in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED"):
        shown = text_of(browser, f'[data-count="{name}"] .value')
        assert shown == str(counts.get(name, 0)), name
        assert shown == str(int(metrics["master/" + name.lower().replace("task_", "tasks_")])), name
    assert text_of(browser, '[data-count="activated_slaves"] .value') == str(state["activated_slaves"]) == "2"
    assert float(text_of(browser, '[data-res="cpus-total"]')) == metrics["master/cpus_total"] == 8
    assert float(text_of(browser, '[data-res="mem-total"]')) == metrics["master/mem_total"]
    wait(browser, lambda d: abs(float(text_of(d, '[data-res="cpus-allocated"]')) - metrics["master/cpus_used"]) < 1e-6,
         message="allocated cpus equal master/cpus_used")
    assert "webui-test" in text_of(browser, "#info")
    wait(browser, lambda d: css(d, "#chart svg path"), timeout=10, message="the allocation chart's lines")
    screenshot(browser, "dashboard")


def test_dashboard_lists_active_and_completed_tasks_with_sandbox_links(browser, ui_cluster, tasks):
    cluster, _ = ui_cluster
    browser.get(cluster.master_url + "/#/")
    active = wait(browser, lambda d: {td.text for td in css(d, "#dash-active-tasks td[data-task]")} >=
                  {*tasks["running"], tasks["chatty"]} and css(d, "#dash-active-tasks td[data-task]"),
                  message="the running tasks on the dashboard")
    assert {td.text for td in active} == {*tasks["running"], tasks["chatty"]}
    completed = {td.text for td in css(browser, "#dash-completed-tasks td[data-task]")}
    assert set(tasks["finished"]) <= completed and not completed & {*tasks["running"], tasks["chatty"]}
    links = css(browser, "#dash-completed-tasks a.sandbox-link")
    assert len(links) == len(completed)
    links[0].click()
    wait(browser, lambda d: [a for a in css(d, "a.file-link") if a.text == "stdout"], message="the task's sandbox")


def test_task_sandbox_shows_what_the_task_printed(browser, ui_cluster, tasks):
    cluster, framework = ui_cluster
    browser.get(cluster.master_url + "/#/tasks?all=1&q=done-2")
    link = wait(browser, lambda d: css(d, "table.tasks a.sandbox-link"), message="a sandbox link")
    assert len(css(browser, "table.tasks tbody tr")) == 1
    screenshot(browser, "tasks")
    link[0].click()
    stdout = wait(browser, lambda d: [a for a in css(d, "a.file-link") if a.text == "stdout"], message="stdout in the sandbox")
    assert text_of(browser, "h2").endswith("done-2")
    screenshot(browser, "sandbox")
    stdout[0].click()
    wait(browser, lambda d: "hello-from-done-2" in text_of(d, "#log"), message="the task's output")


def test_following_a_running_task_shows_new_lines(browser, ui_cluster, tasks):
    cluster, framework = ui_cluster
    browser.get(f"{cluster.master_url}/#/task/{framework.framework_id}/chatty")
    wait(browser, lambda d: css(d, "a.tail-stdout"), message="the sandbox page")[0].click()
    first = wait(browser, lambda d: text_of(d, "#log").strip(), message="some lines")
    last_line = first.strip().splitlines()[-1]
    number = int(last_line.split("-")[1])
    wait(browser, lambda d: f"tick-{number + 3}" in text_of(d, "#log"), timeout=15, message="new lines")
    screenshot(browser, "log-follow")


def test_slave_page_shows_live_usage(browser, ui_cluster, tasks):
    cluster, framework = ui_cluster
    slave_id = framework.scheduler.task_slaves["sleeper-1"]
    browser.get(f"{cluster.master_url}/#/slaves/{slave_id}")
    wait(browser, lambda d: len(css(d, "table.usage tbody tr")) >= 1 and css(d, '[data-usage="mem"]'), message="usage rows")
    mem = wait(browser, lambda d: [c.text for c in css(d, '[data-usage="mem"]') if not c.text.startswith("0 B")],
               message="a nonzero memory use")
    assert "MB" in mem[0] or "KB" in mem[0]
    wait(browser, lambda d: all(c.text != "…" for c in css(d, '[data-usage="cpu"]')), message="cpu rates")
    assert "cpus" in text_of(browser, "table.slave-resources")
    screenshot(browser, "slave")


def test_other_pages_render(browser, ui_cluster, tasks):
    cluster, framework = ui_cluster
    for name, route, selector in [("frameworks", "#/frameworks", "table.frameworks tbody tr"),
                                  ("framework", f"#/frameworks/{framework.framework_id}", "table.tasks tbody tr"),
                                  ("slaves", "#/slaves", "table.slaves tbody tr"),
                                  ("roles", "#/roles", "table.roles tbody tr"),
                                  ("offers", "#/offers", "table.offers")]:
        browser.get(f"{cluster.master_url}/{route}")
        wait(browser, lambda d: css(d, selector), message=f"{name} page")
        screenshot(browser, name)


def test_a_suppressed_framework_shows_why_it_gets_no_offers(browser, ui_cluster, tasks):
    from tests.builders import RunningFramework, framework_info

    cluster, _ = ui_cluster
    with RunningFramework(cluster.master, framework_info(name="quiet", roles=["quiet"])) as quiet:
        quiet.driver.suppressOffers()
        framework = wait(browser, lambda d: [f for f in cluster.state()["frameworks"] if f["id"] == quiet.framework_id
                                              and (f.get("allocator") or {}).get("reasons")] or None
                         if "allocator" in cluster.state()["frameworks"][0] else "no-allocator",
                         message="the allocator's reasons")
        if framework == "no-allocator":
            pytest.skip("this allocator publishes no 'allocator' entry in /master/state")
        browser.get(f"{cluster.master_url}/#/frameworks/{quiet.framework_id}")
        wait(browser, lambda d: "SUPPRESSED" in text_of(d, "#why"), message="the reason on the framework page")
        screenshot(browser, "framework-why")
        browser.get(f"{cluster.master_url}/#/frameworks")
        wait(browser, lambda d: "SUPPRESSED" in text_of(d, "table.frameworks"), message="the reason in the list")


def test_sandbox_browser_walks_into_directories_and_back(browser, ui_cluster, tasks):
    cluster, framework = ui_cluster
    framework.scheduler.submit("mkdir -p out && echo nested-file > out/data.txt", task_id="nester")
    framework.scheduler.wait_state("nester", pb.TASK_FINISHED)
    browser.get(f"{cluster.master_url}/#/task/{framework.framework_id}/nester")
    wait(browser, lambda d: [a for a in css(d, "a.file-link") if a.text == "out/"], message="the out/ directory")[0].click()
    wait(browser, lambda d: [a for a in css(d, "a.file-link") if a.text == "data.txt"], message="data.txt")[0].click()
    wait(browser, lambda d: "nested-file" in text_of(d, "#log"), message="the nested file's text")
    browser.back()
    wait(browser, lambda d: css(d, "a.parent-link"), message="a parent link")[0].click()
    wait(browser, lambda d: [a for a in css(d, "a.file-link") if a.text == "stdout"], message="back at the sandbox root")
    assert not css(browser, "a.parent-link"), "no way up out of the sandbox"
