// Berth's only script. Pages work without it; it adds copy buttons,
// confirmation before destructive forms and search as you type. Loaded
// from Berth's origin (the CSP allows no inline script), it reads only
// data-* attributes the server rendered.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // <button data-copy="text">: copies text to the clipboard.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = button.getAttribute("data-copy");
      try {
        await navigator.clipboard.writeText(text);
        flash(button, "Copied");
      } catch {
        const selection = window.getSelection();
        const target = document.getElementById(button.getAttribute("aria-controls") || "");
        if (target && selection) {
          const range = document.createRange();
          range.selectNodeContents(target);
          selection.removeAllRanges();
          selection.addRange(range);
        }
        flash(button, "Press Ctrl+C");
      }
    });
  }

  // <form data-confirm="question">: asks before submitting.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  }

  // <form data-live-search>: submits its search box after a pause in typing.
  for (const form of document.querySelectorAll("form[data-live-search]")) {
    const input = form.querySelector("input[type=search]");
    if (!input) continue;
    let timer;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => form.requestSubmit(), 400);
    });
  }
});

function flash(button, text) {
  const label = button.textContent;
  button.textContent = text;
  setTimeout(() => { button.textContent = label; }, 1500);
}
