"""``recagent serve`` as real processes: two servers on one index and one database, and the
chat page driven in headless Chromium (Debian's chromium + chromium-driver)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import httpx
import pytest
from serve_support import start_server, stop

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# What Chromium needs on these machines: no sandbox as root, no GPU, and none of the
# background connections that a closed network refuses.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1100"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-home")


@pytest.fixture(scope="module")
def server(home, tiny_shop_dir):
    srv = start_server(home, f"sqlite:///{home / 'sessions.db'}", home / "a.log", data=tiny_shop_dir)
    yield srv
    stop(srv)


def test_two_processes_serve_from_the_same_index_and_database(server, home, tiny_shop_dir):
    second = start_server(home, f"sqlite:///{home / 'sessions.db'}", home / "b.log", data=tiny_shop_dir)
    try:
        a, b = httpx.Client(base_url=server.url, timeout=60), httpx.Client(base_url=second.url, timeout=60)
        sid = a.post("/v1/sessions", json={"user_id": "2"}).json()["session_id"]
        history = a.get(f"/v1/sessions/{sid}").json()["history_length"]
        first = b.post(f"/v1/sessions/{sid}/messages", json={"message": "something under $50"})
        assert first.status_code == 200, first.text
        liked = first.json()["answer"]["recommendations"][0]["item_id"]
        assert a.post(f"/v1/sessions/{sid}/feedback", json={"item_id": liked, "kind": "like"}).status_code == 201
        state = b.get(f"/v1/sessions/{sid}").json()
        assert state["liked"] == [liked] and state["turns"] == 1 and state["history_length"] == history + 1
        again = b.post(f"/v1/sessions/{sid}/messages", json={"message": "more"}).json()
        trace = next(c for c in again["answer"]["trace"] if c["tool"] == "recommend_for_user")
        assert trace["arguments"]["history"] == history + 1, "process B built on A's feedback"
        assert "price <= $50" in again["answer"]["constraints"]

        # Feedback on one session from both processes at once: the lease serialises them.
        catalog = [f"P{n:05d}" for n in range(1, 300)]
        fresh = [i for i in catalog if i not in {x["item_id"] for x in state["recent_history"]}][:40]
        statuses: list[int] = []

        def click(client, items):
            statuses.extend(client.post(f"/v1/sessions/{sid}/feedback",
                                        json={"item_id": i, "kind": "click"}).status_code for i in items)

        threads = [threading.Thread(target=click, args=(c, fresh[n::4]))
                   for n, c in enumerate((a, b, a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [201] * len(fresh)
        assert a.get(f"/v1/sessions/{sid}").json()["history_length"] == history + 1 + len(fresh)
    finally:
        stop(second)


def chromium_driver(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def chat_in_browser(url: str, profile: Path, message: str, *, user: str | None = "1",
                    screenshot: Path | None = None, timeout: float = 120) -> dict:
    """Open the page, start a conversation, send ``message``, wait for the cards, like #1."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium_driver(profile)
    try:
        driver.get(url)
        if user:
            driver.find_element(By.ID, "user").send_keys(user)
        driver.find_element(By.ID, "start").click()
        wait = WebDriverWait(driver, timeout)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-session-id"))
        driver.find_element(By.ID, "message").send_keys(message)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".turn[data-done=true] .card"))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        seen = [{"item_id": c.get_attribute("data-item-id"),
                 "title": c.find_element(By.CLASS_NAME, "title").text,
                 "price": c.find_element(By.CLASS_NAME, "price").text,
                 "why": c.find_element(By.CLASS_NAME, "why").text} for c in cards]
        cards[0].find_element(By.CSS_SELECTOR, "button.like").click()
        wait.until(lambda d: "on" in d.find_element(By.CSS_SELECTOR, ".card button.like").get_attribute("class"))
        if screenshot is not None:
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(screenshot))
        sid = driver.find_element(By.TAG_NAME, "body").get_attribute("data-session-id")
        return {"session_id": sid, "cards": seen,
                "status": driver.find_element(By.CSS_SELECTOR, ".turn .status").text}
    finally:
        driver.quit()


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                    reason="needs Debian's chromium and chromium-driver "
                           "(apt-get install chromium chromium-driver; .ci/run installs them)")
def test_the_chat_page_in_headless_chromium(server, tmp_path):
    got = chat_in_browser(server.url, tmp_path / "profile", "something under $30",
                          screenshot=tmp_path / "chat.png")
    assert got["cards"] and got["status"].startswith(f"{len(got['cards'])} recommendations")
    for card in got["cards"]:
        assert card["title"] and card["why"] and card["why"] != "…"
        assert card["price"].startswith("$") and float(card["price"][1:]) <= 30
    state = httpx.get(f"{server.url}/v1/sessions/{got['session_id']}").json()
    assert state["turns"] == 1 and state["liked"] == [got["cards"][0]["item_id"]], "the click reached the DB"
    assert (tmp_path / "chat.png").stat().st_size > 10_000
