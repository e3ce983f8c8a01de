"""A scripted walkthrough of every tab in headless Chromium on the bundled demo model, at 1366x900 and at a
phone's 390x844, writing the README's screenshots to docs/screenshots/:

    python -m tests.walkthrough
"""
from __future__ import annotations

from .browser_helpers import SHOTS, act, chromium, generate, open_page, open_tab, served_app, wait_idle


def chat(page) -> None:
    open_tab(page, "Chat")
    for text in ("Good morning! What shall we do today?", "Tell me about the ball."):
        page.fill("#chat-message textarea", text)
        page.click("#chat-send")
        page.wait_for_function("n => document.querySelectorAll('#chatbot .bot').length >= n",
                               arg=2 if "ball" in text else 1)
        wait_idle(page)


def three_level_tree(page) -> None:
    """A prompt, two generations of it (a branch point), and a continuation with added text: three levels."""
    generate(page, "It was a fine morning, and Elizabeth")
    act(page, "#pg-generate")
    page.fill("#pg-extra textarea", " Then she said,")
    act(page, "#pg-continue")
    page.locator("#pg-tokens .token").nth(3).click()
    wait_idle(page)


def desktop(browser, url) -> None:
    page = open_page(browser, url, 1366, 900)
    chat(page)
    page.screenshot(path=str(SHOTS / "chat.png"))
    three_level_tree(page)
    page.screenshot(path=str(SHOTS / "playground.png"), full_page=True)
    open_tab(page, "Compare")
    page.click("#cmp-run")
    page.wait_for_function("() => [0, 1, 2].every(i => document.querySelector(`#cmp-text-${i} textarea`).value)")
    wait_idle(page)
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
    open_tab(page, "State")
    page.click("#st-show")
    page.wait_for_selector("#st-heatmap svg rect")
    wait_idle(page)
    page.wait_for_timeout(1500)  # the Vega plots draw after the data arrives
    page.screenshot(path=str(SHOTS / "state.png"), full_page=True)
    open_tab(page, "Models")
    page.wait_for_selector("#models-info table")
    page.screenshot(path=str(SHOTS / "models.png"), full_page=True)
    page.close()


def phone(browser, url) -> None:
    page = open_page(browser, url, 390, 844)
    chat(page)
    page.screenshot(path=str(SHOTS / "mobile-chat.png"))
    three_level_tree(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / "mobile-playground.png"))
    page.evaluate("() => document.querySelector('#pg-tree').scrollIntoView()")
    page.screenshot(path=str(SHOTS / "mobile-tree.png"))
    open_tab(page, "Compare")
    page.click("#cmp-run")
    page.wait_for_function("() => [0, 1, 2].every(i => document.querySelector(`#cmp-text-${i} textarea`).value)")
    wait_idle(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / "mobile-compare.png"))
    open_tab(page, "State")
    page.click("#st-show")
    page.wait_for_selector("#st-norms svg")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SHOTS / "mobile-state.png"), full_page=True)
    open_tab(page, "Models")
    page.wait_for_selector("#models-info table")
    page.screenshot(path=str(SHOTS / "mobile-models.png"))
    page.close()


def main() -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served_app() as (url, _), chromium() as browser:
        desktop(browser, url)
        phone(browser, url)
    print(f"screenshots written to {SHOTS}")


if __name__ == "__main__":
    main()
