/* omnicanal staff console: live updates (server-sent events -> htmx refreshes) and the reply box.
   Hand-written, no build step, no inline script (the console's CSP allows only 'self'). */
(function () {
  "use strict";

  // -- live updates -------------------------------------------------------------------------
  // Elements with data-live="topic ..." (a prefix such as "message" or an exact type such as
  // "message.received") and optionally data-conversation="<id>" are refreshed through their own
  // hx-get (hx-trigger="live-refresh") when a matching change is announced.
  var pending = new Map();

  function matches(el, event) {
    var topics = (el.getAttribute("data-live") || "").split(/\s+/);
    var prefix = String(event.type || "").split(".")[0];
    if (topics.indexOf(event.type) < 0 && topics.indexOf(prefix) < 0) return false;
    var only = el.getAttribute("data-conversation");
    return !only || only === event.conversation_id;
  }

  function refresh(el) {
    if (pending.has(el)) return;
    // coalesce bursts (a message, its conversation update, its delivery) into one request
    pending.set(el, window.setTimeout(function () {
      pending.delete(el);
      if (window.htmx && document.body.contains(el)) window.htmx.trigger(el, "live-refresh");
    }, 120));
  }

  // a call ringing for this agent: a banner linking to the caller's conversation (screen-pop)
  function callPop(event) {
    var pop = document.getElementById("call-pop");
    if (!pop || (event.agents || []).indexOf(pop.getAttribute("data-user")) < 0) return;
    pop.querySelector("a").setAttribute("href", "/console/conversations/" + event.conversation_id);
    pop.hidden = false;
  }

  function startLive() {
    // the pages agents work on (inbox, conversation, supervision) listen; they show the call screen-pop too
    if (!window.EventSource || !document.querySelector("[data-live]")) return;
    var source = new EventSource("/console/stream");
    source.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event.type === "call.ringing") { callPop(event); return; }
      if (event.type === "typing") { showTyping(event); return; }
      document.querySelectorAll("[data-live]").forEach(function (el) {
        if (matches(el, event)) refresh(el);
      });
    };
    source.onopen = function () {
      // whatever changed between rendering the page and connecting (or while disconnected) was missed
      document.querySelectorAll("[data-live]").forEach(refresh);
      document.body.setAttribute("data-live-connected", "true");
    };
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // -- typing, both ways (the customer's web chat) ----------------------------------------------
  var typingTimers = new Map();
  function showTyping(event) {
    document.querySelectorAll("[data-typing-for]").forEach(function (el) {
      if (el.getAttribute("data-typing-for") !== event.conversation_id) return;
      el.hidden = !event.typing;
      window.clearTimeout(typingTimers.get(el));
      if (event.typing) typingTimers.set(el, window.setTimeout(function () { el.hidden = true; }, 8000));
    });
  }

  function announceTyping(form, box) {
    var last = 0;
    box.addEventListener("input", function () {
      var now = Date.now();
      // only the web chat shows an agent typing
      if (selectedChannel() !== "web" || !box.value.trim() || now - last < 2000) return;
      last = now;
      var csrf = form.querySelector("[name=csrf_token]");
      var url = form.getAttribute("action").replace(/\/reply$/, "/typing");
      var body = new FormData();
      body.append("csrf_token", csrf ? csrf.value : "");
      body.append("typing", "1");
      window.fetch(url, { method: "POST", body: body, credentials: "same-origin" }).catch(function () {});
    });
  }

  // -- the conversation view -----------------------------------------------------------------
  function scrollThread() {
    var thread = document.getElementById("messages");
    if (thread) thread.scrollTop = thread.scrollHeight;
  }

  function selectedChannel() {
    var select = document.getElementById("reply-channel");
    var note = document.getElementById("reply-private");
    if (note && note.checked) return "note";
    return select ? select.value : "";
  }

  function answerUrl(answerId) {
    var form = document.getElementById("reply-form");
    return form.getAttribute("data-answers-url") + "/" + encodeURIComponent(answerId) +
      "?channel=" + encodeURIComponent(selectedChannel());
  }

  function insertAnswer(answerId, replaceSlash) {
    var box = document.getElementById("reply-text");
    if (!box) return;
    fetch(answerUrl(answerId), { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) {
        if (!response.ok) throw new Error("answer " + response.status);
        return response.text();
      })
      .then(function (text) {
        if (replaceSlash) {
          var rest = box.value.indexOf("\n") >= 0 ? box.value.slice(box.value.indexOf("\n")) : "";
          box.value = text + rest;
        } else if (!box.value.trim()) {
          box.value = text;
        } else {
          var at = box.selectionStart || box.value.length;
          box.value = box.value.slice(0, at) + text + box.value.slice(at);
        }
        var hidden = document.getElementById("reply-answer");
        if (hidden) hidden.value = answerId;
        hideSlash();
        box.focus();
        box.dispatchEvent(new Event("answer-inserted", { bubbles: true }));
      })
      .catch(function () { /* the agent can still type; nothing to undo */ });
  }

  var slashTimer = null;
  var lastQuery = null;

  function slashBox() { return document.getElementById("slash-results"); }

  function hideSlash() {
    var results = slashBox();
    if (results) { results.hidden = true; results.innerHTML = ""; }
    lastQuery = null;
  }

  function slashQuery(box) {
    if (!box.value.startsWith("/")) return null;
    return box.value.slice(1).split("\n")[0];
  }

  function searchAnswers(box) {
    var query = slashQuery(box);
    if (query === null) { hideSlash(); return; }
    if (query === lastQuery) return;
    lastQuery = query;
    window.clearTimeout(slashTimer);
    slashTimer = window.setTimeout(function () {
      var form = document.getElementById("reply-form");
      var results = slashBox();
      if (!form || !results || !window.htmx) return;
      window.htmx.ajax("GET", form.getAttribute("data-answers-url") + "?q=" + encodeURIComponent(query),
        { target: results, swap: "innerHTML" }).then(function () {
        if (slashQuery(box) !== null) results.hidden = false;
      });
    }, 150);
  }

  function moveActive(step) {
    var options = Array.prototype.slice.call(slashBox().querySelectorAll(".answer-pick"));
    if (!options.length) return;
    var current = options.findIndex(function (o) { return o.classList.contains("active"); });
    var next = (current + step + options.length) % options.length;
    options.forEach(function (o, i) {
      o.classList.toggle("active", i === next);
      o.setAttribute("aria-selected", i === next ? "true" : "false");
    });
    options[next].scrollIntoView({ block: "nearest" });
  }

  function setUpComposer() {
    var box = document.getElementById("reply-text");
    if (!box) return;
    var note = document.getElementById("reply-private");
    var form = document.getElementById("reply-form");
    function noteMode() {
      var select = document.getElementById("reply-channel");
      form.classList.toggle("is-note", !!(note && note.checked));
      if (select) select.disabled = !!(note && note.checked);
    }
    if (note) note.addEventListener("change", noteMode);
    // A refresh requested before the agent picked a channel must not undo the pick when it lands.
    var pickedChannel = null;
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      var target = event.detail && event.detail.target;
      var select = document.getElementById("reply-channel");
      if (target && target.id === "channel-picker" && select) pickedChannel = select.value;
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      var target = event.detail && event.detail.target;
      if (target && target.id === "channel-picker") {
        var select = document.getElementById("reply-channel");
        var option = select && pickedChannel ? select.querySelector('option[value="' + pickedChannel + '"]') : null;
        if (option && !option.disabled) select.value = pickedChannel;
        pickedChannel = null;
        noteMode();
      }
      if (target && target.id === "messages") scrollThread();
    });
    noteMode();

    box.addEventListener("input", function () {
      if (!box.value.trim()) {
        var hidden = document.getElementById("reply-answer");
        if (hidden) hidden.value = "";
      }
      searchAnswers(box);
    });
    box.addEventListener("keydown", function (event) {
      var results = slashBox();
      if (!results || results.hidden) {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
        return;
      }
      if (event.key === "ArrowDown") { event.preventDefault(); moveActive(1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); moveActive(-1); }
      else if (event.key === "Escape") { event.preventDefault(); hideSlash(); }
      else if (event.key === "Enter" || event.key === "Tab") {
        var active = results.querySelector(".answer-pick.active") || results.querySelector(".answer-pick");
        if (active) { event.preventDefault(); insertAnswer(active.getAttribute("data-answer-id"), true); }
      }
    });
    document.addEventListener("click", function (event) {
      var pick = event.target.closest && event.target.closest(".answer-pick");
      if (pick) {
        event.preventDefault();
        insertAnswer(pick.getAttribute("data-answer-id"), !!pick.closest("#slash-results"));
      } else if (!event.target.closest || !event.target.closest(".reply-box")) {
        hideSlash();
      }
    });
    announceTyping(form, box);
    form.addEventListener("submit", function () {
      var send = form.querySelector("[type=submit]");
      if (send) send.disabled = true;  // one click, one message
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    startLive();
    setUpComposer();
    scrollThread();
  });
})();
