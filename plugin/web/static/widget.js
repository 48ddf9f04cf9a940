/* helpdesk-assist chat widget: one tag on a helpdesk's pages opens the chat in a corner.

     <script src="https://assist.corp.example/static/widget.js" defer></script>

   Optional attributes: data-lang="ru|en" (default: the page's <html lang>), data-label="..." (the
   button's text). The chat runs in an iframe from the assistant's own origin (/chat?embed=1), so the
   helpdesk page never sees the conversation; the assistant allows the framing only for the origins
   listed in chat.frame_ancestors. No inline styles or scripts are added to the page (element.style is
   set through the DOM, which a style-src CSP does not block). */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.helpdeskAssistWidget) { return; }
  window.helpdeskAssistWidget = true;

  var origin = new URL(script.src, window.location.href).origin;
  var raw = script.getAttribute("data-lang") || document.documentElement.lang || "";
  var lang = /^ru/i.test(raw) ? "ru" : (raw ? "en" : "");
  var label = script.getAttribute("data-label") || (lang === "en" ? "IT support chat" : "Чат ИТ-поддержки");
  var closeLabel = lang === "en" ? "Close the chat" : "Закрыть чат";
  var frameId = "helpdesk-assist-chat";

  function css(el, rules) {
    Object.keys(rules).forEach(function (k) { el.style[k] = rules[k]; });
  }

  var button = document.createElement("button");
  button.type = "button";
  button.id = "helpdesk-assist-button";
  button.textContent = label;
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", frameId);
  css(button, {
    position: "fixed", right: "1rem", bottom: "1rem", zIndex: "2147483000", font: "600 15px/1.2 system-ui, sans-serif",
    padding: ".7rem 1.1rem", borderRadius: "2rem", border: "0", background: "#1d5fbf", color: "#fff",
    boxShadow: "0 2px 10px rgba(0,0,0,.3)", cursor: "pointer"
  });

  var frame = null;

  function open() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = frameId;
      frame.title = label;
      frame.src = origin + "/chat?embed=1" + (lang ? "&lang=" + lang : "");
      frame.setAttribute("referrerpolicy", "no-referrer");
      css(frame, {
        position: "fixed", right: "1rem", bottom: "4.5rem", zIndex: "2147483000", width: "min(26rem, calc(100vw - 2rem))",
        height: "min(40rem, calc(100vh - 6rem))", border: "1px solid #8888", borderRadius: ".6rem",
        background: "#fff", boxShadow: "0 4px 24px rgba(0,0,0,.3)"
      });
      document.body.appendChild(frame);
    }
    frame.style.display = "block";
    button.setAttribute("aria-expanded", "true");
    button.textContent = closeLabel;
    frame.focus();
  }

  function close() {
    if (frame) { frame.style.display = "none"; }
    button.setAttribute("aria-expanded", "false");
    button.textContent = label;
  }

  button.addEventListener("click", function () {
    if (button.getAttribute("aria-expanded") === "true") { close(); } else { open(); }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && button.getAttribute("aria-expanded") === "true") { close(); button.focus(); }
  });

  function mount() { document.body.appendChild(button); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
})();
