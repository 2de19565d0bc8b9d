/*
 * Singularity Nexus: the browser side of the human-in-the-loop UI.
 *
 * One script for every page; <main id="app" data-page="..."> says which page this is.
 * Sections: helpers, reviewer name, HTTP, live connection and pending store, card lists,
 * then one section per page (approvals, questions, history, dashboard), then start-up.
 *
 * Security: every string from the server was written by an agent or an LLM and is untrusted.
 * It reaches the page only through textContent / createElement / setAttribute (see el()).
 * The single exception is an approval's diff_html, which the server generates with Pygments
 * (see diffFragment(), which also checks its shape before using it).
 * Characters a reader cannot see (bidirectional controls, zero-width, control characters)
 * are shown as visible <U+....> markers wherever such text is shown (see marked()).
 */
"use strict";

(() => {
  // ------------------------------------------------------------------------------------
  // Helpers: DOM building and formatting
  // ------------------------------------------------------------------------------------

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  /**
   * Build an element. Props become attributes (or className / text); children are nodes or
   * strings, and strings always become text nodes, so server text can never turn into markup.
   */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key.toLowerCase().startsWith("on")) throw new Error(`el(): no ${key} attributes`);
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function parseTime(iso) {
    if (typeof iso !== "string" || !iso) return null;
    const t = Date.parse(iso);
    return Number.isNaN(t) ? null : t;
  }

  /** Whole minutes, hours and days: for ages and deadlines, refreshed every 30 s. */
  function coarseSpan(ms) {
    const minutes = Math.floor(ms / 60000);
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
    const days = Math.floor(hours / 24);
    return hours % 24 ? `${days} d ${hours % 24} h` : `${days} d`;
  }

  function ageText(iso) {
    const t = parseTime(iso);
    if (t === null) return "";
    const ms = Date.now() - t;
    return ms < 60000 ? "just now" : `${coarseSpan(ms)} ago`;
  }

  function deadlineText(iso) {
    const t = parseTime(iso);
    if (t === null) return "";
    const ms = t - Date.now();
    if (ms <= 0) return "deadline passed";
    return ms < 60000 ? "expires in under 1 min" : `expires in ${coarseSpan(ms)}`;
  }

  /** A duration for figures (time to decision, queue age): "850 ms", "4.2 s", "3 min 5 s". */
  function duration(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return "—";
    ms = Math.max(0, Number(ms));
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const seconds = ms / 1000;
    if (seconds < 10) return `${seconds.toFixed(1)} s`;
    if (seconds < 60) return `${Math.round(seconds)} s`;
    const whole = Math.round(seconds);
    const minutes = Math.floor(whole / 60);
    if (minutes < 60) return whole % 60 ? `${minutes} min ${whole % 60} s` : `${minutes} min`;
    return coarseSpan(minutes * 60000);
  }

  const pad = (n) => String(n).padStart(2, "0");

  /** Local date and time, "2024-05-01 14:03"; the exact UTC value goes into a title. */
  function dateTime(iso) {
    const t = parseTime(iso);
    if (t === null) return "—";
    const d = new Date(t);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  const grouped = (n) => Number(n || 0).toLocaleString("en-US");
  const plainCount = (n) => String(Number(n || 0));
  const usd = (n) => `$${Number(n || 0).toFixed(4)}`;

  /** A <time> that refreshRelativeTimes() keeps current ("3 min ago"). */
  function ageNode(iso) {
    return el("time", { className: "age", datetime: iso, title: iso, "data-age": iso },
      ageText(iso));
  }

  /** "expires in 2 min", kept current; empty and hidden without a deadline. */
  function deadlineNode(iso) {
    const node = el("span", { className: "deadline" });
    setDeadline(node, iso);
    return node;
  }

  function setDeadline(node, iso) {
    if (iso) {
      node.dataset.deadline = iso;
      node.title = `Deadline ${iso}`;
    } else {
      delete node.dataset.deadline;
      node.removeAttribute("title");
    }
    node.hidden = !iso;
    paintDeadline(node);
  }

  function paintDeadline(node) {
    const iso = node.dataset.deadline;
    node.textContent = iso ? deadlineText(iso) : "";
    const left = iso ? parseTime(iso) - Date.now() : Infinity;
    node.classList.toggle("urgent", left < 120000);
  }

  function refreshRelativeTimes() {
    for (const node of $$("[data-age]")) node.textContent = ageText(node.dataset.age);
    for (const node of $$("[data-deadline]")) paintDeadline(node);
  }

  /** Is the user typing? Then single-letter shortcuts must not fire. */
  function isTextEntry(target) {
    if (!(target instanceof Element)) return false;
    if (target.isContentEditable || target.closest("textarea, select")) return true;
    if (target instanceof HTMLInputElement) {
      return !["button", "checkbox", "radio", "submit", "reset", "range", "color", "file"]
        .includes(target.type);
    }
    return false;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  // ------------------------------------------------------------------------------------
  // Hidden characters: each shown as a visible <U+....> marker, and a warning on the card
  // ------------------------------------------------------------------------------------

  /** The set comes from the server (singularity/text_safety.py), so the page and the CLI agree. */
  const HIDDEN = (() => {
    const app = document.getElementById("app");
    try {
      return new RegExp(app.dataset.hiddenChars, "gu");
    } catch {
      // No set from the server: every control, format or unassigned character is flagged.
      return /\r(?!\n)|[^\P{C}\t\n\r]|[\u2028\u2029\u115F\u1160\u3164\uFFA0]/gu;
    }
  })();

  const codeOf = (ch) => `U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
  const hasHidden = (text) => typeof text === "string" && text.search(HIDDEN) !== -1;

  /** Text as nodes, each hidden character a highlighted marker; for el() and append(). */
  function marked(text) {
    const value = text === null || text === undefined ? "" : String(text);
    const out = [];
    let last = 0;
    for (const match of value.matchAll(HIDDEN)) {
      if (match.index > last) out.push(value.slice(last, match.index));
      const code = codeOf(match[0]);
      out.push(el("span", { className: "hidden-char", "data-testid": "hidden-char",
        title: `Hidden character ${code}: invisible, or changes how the text around it reads` },
      `<${code}>`));
      last = match.index + match[0].length;
    }
    if (last < value.length || !out.length) out.push(value.slice(last));
    return out;
  }

  /** Text with markers, as one string (titles, labels, toasts). */
  const escapeHidden = (text) => String(text ?? "").replace(HIDDEN, (ch) => `<${codeOf(ch)}>`);

  /** Hidden characters inside nodes already built (the highlighted diff) become markers. */
  function markHiddenIn(root) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const found = [];
    while (walker.nextNode()) if (hasHidden(walker.currentNode.data)) found.push(walker.currentNode);
    for (const node of found) node.replaceWith(...marked(node.data));
  }

  /** How many hidden characters, which ones, and on which lines (1-based). */
  function hiddenIn(text) {
    const result = { count: 0, codes: new Set(), lines: [] };
    if (typeof text !== "string") return result;
    let line = 1;
    let from = 0;
    for (const match of text.matchAll(HIDDEN)) {
      for (let i = text.indexOf("\n", from); i !== -1 && i < match.index;
        i = text.indexOf("\n", i + 1)) line += 1;
      from = match.index;
      result.count += 1;
      result.codes.add(codeOf(match[0]));
      if (result.lines[result.lines.length - 1] !== line) result.lines.push(line);
    }
    return result;
  }

  /**
   * The card's warning, as GitHub shows one, or null. fields: [name, text, withLines].
   * "This change contains 3 hidden or bidirectional Unicode characters (U+202E) in diff
   * lines 6, 7 ..."
   */
  function hiddenWarning(noun, fields) {
    let count = 0;
    const codes = new Set();
    const where = [];
    for (const [name, text, withLines] of fields) {
      const found = hiddenIn(text);
      if (!found.count) continue;
      count += found.count;
      for (const code of found.codes) codes.add(code);
      if (!withLines) {
        where.push(name);
        continue;
      }
      const lines = found.lines.slice(0, 10).join(", ") + (found.lines.length > 10 ? ", …" : "");
      where.push(`${name} line${found.lines.length > 1 ? "s" : ""} ${lines}`);
    }
    if (!count) return null;
    const kinds = Array.from(codes).slice(0, 6).join(", ") + (codes.size > 6 ? ", …" : "");
    return el("div", { className: "hidden-warning", "data-testid": "hidden-warning",
      role: "alert", "data-count": String(count) },
    el("strong", {}, `⚠ This ${noun} contains ${count} hidden or bidirectional Unicode ` +
      `character${count > 1 ? "s" : ""}`),
    ` (${kinds}) in ${where.join("; ")}. It may read differently from what it does: ` +
      "each one is shown as a highlighted <U+…> marker. Read it with care before deciding.");
  }

  // ------------------------------------------------------------------------------------
  // Reviewer name: kept in localStorage, sent as `user` with every decision
  // ------------------------------------------------------------------------------------

  const REVIEWER_KEY = "nexus.reviewer";
  const DEFAULT_REVIEWER = "web";

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null; // storage can be blocked (privacy settings): the default then applies
    }
  }

  function storageSet(key, value) {
    try {
      if (value) window.localStorage.setItem(key, value);
      else window.localStorage.removeItem(key);
    } catch {
      /* not kept across visits, still used on this page */
    }
  }

  function initReviewer() {
    const input = $("#reviewer");
    if (!input) return;
    input.value = storageGet(REVIEWER_KEY) || DEFAULT_REVIEWER;
    input.addEventListener("input", () => storageSet(REVIEWER_KEY, input.value.trim()));
    input.addEventListener("change", () => {
      if (!input.value.trim()) input.value = DEFAULT_REVIEWER;
    });
  }

  function reviewer() {
    const input = $("#reviewer");
    return (input && input.value.trim()) || DEFAULT_REVIEWER;
  }

  // ------------------------------------------------------------------------------------
  // HTTP: JSON calls with the CSRF header; a 401 anywhere sends the browser to sign in
  // ------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function csrfToken() {
    const meta = $('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  let leaving = false;

  /** Reloading the page lets the server show its sign-in (denied) page. */
  function signInAgain() {
    if (leaving) return;
    leaving = true;
    window.location.reload();
  }

  function detailOf(data) {
    if (!data || data.detail === undefined || data.detail === null) return "";
    const { detail } = data;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => (d && typeof d.msg === "string" ? d.msg : JSON.stringify(d)))
        .join("; ");
    }
    return JSON.stringify(detail);
  }

  async function api(method, url, body, signal) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store", signal };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRF-Token"] = csrfToken();
      init.body = JSON.stringify(body || {});
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError("Could not reach Nexus. Check that it runs, then try again.", 0);
    }
    if (response.status === 401) {
      signInAgain();
      throw new ApiError("Signed out: reloading the page…", 401);
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      /* an error page that is not JSON: the status says enough */
    }
    if (!response.ok) {
      throw new ApiError(detailOf(data) || `Request failed (HTTP ${response.status}).`,
        response.status);
    }
    return data;
  }

  // ------------------------------------------------------------------------------------
  // Diff: the only server HTML the page uses
  // ------------------------------------------------------------------------------------

  /**
   * diff_html as nodes. It is parsed in an inert <template> (nothing in it loads or runs)
   * and used only if it is what Pygments makes: <pre>/<span> elements with a class and no
   * other attribute. Anything else falls back to the raw diff as text.
   */
  function diffFragment(item) {
    const fragment = diffNodes(item);
    markHiddenIn(fragment);
    return fragment;
  }

  function diffNodes(item) {
    const html = item.diff_html;
    if (typeof html === "string" && html) {
      const template = document.createElement("template");
      template.innerHTML = html; // the one innerHTML of server text (see the file comment)
      if (isPygmentsMarkup(template.content)) {
        const pre = template.content.querySelector("pre");
        if (pre && template.content.children.length === 1) {
          pre.classList.add("diff");
          return template.content;
        }
        return el("pre", { className: "diff" }, template.content);
      }
    }
    return el("pre", { className: "diff" }, typeof item.diff === "string" ? item.diff : "");
  }

  function isPygmentsMarkup(fragment) {
    for (const node of fragment.querySelectorAll("*")) {
      if (node.tagName !== "PRE" && node.tagName !== "SPAN") return false;
      for (const attr of node.attributes) if (attr.name !== "class") return false;
    }
    return true;
  }

  // ------------------------------------------------------------------------------------
  // Toasts: short notes, e.g. that another reviewer decided a request on screen
  // ------------------------------------------------------------------------------------

  function toast(message, tone = "info") {
    const box = $("#toasts");
    if (!box) return;
    const node = el("div", { className: `toast toast-${tone}`, "data-testid": "toast" },
      marked(message));
    box.append(node);
    while (box.children.length > 4) box.firstElementChild.remove();
    setTimeout(() => node.remove(), 6000);
  }

  // ------------------------------------------------------------------------------------
  // Pending store: every pending approval and question, fed by the WebSocket
  // ------------------------------------------------------------------------------------

  const KINDS = ["approval", "question"];
  const pending = { approval: new Map(), question: new Map() };
  const subscribers = { approval: [], question: [] };
  let synced = false; // false until the first snapshot: badges stay hidden until then

  /** handler: { snapshot(items), update(item) } for one kind. */
  function subscribe(kind, handler) {
    subscribers[kind].push(handler);
  }

  const validItem = (item) => item && typeof item === "object" && typeof item.id === "string";

  function applySnapshot(message) {
    synced = true;
    for (const kind of KINDS) {
      const items = (Array.isArray(message[`${kind}s`]) ? message[`${kind}s`] : [])
        .filter((item) => validItem(item) && item.status === "pending");
      pending[kind].clear();
      for (const item of items) pending[kind].set(item.id, item);
      for (const handler of subscribers[kind]) handler.snapshot(items);
    }
    renderBadges();
  }

  function applyUpdate(kind, item) {
    if (!validItem(item)) return;
    if (item.status === "pending") pending[kind].set(item.id, item);
    else pending[kind].delete(item.id);
    for (const handler of subscribers[kind]) handler.update(item);
    renderBadges();
  }

  function renderBadges() {
    for (const kind of KINDS) {
      const badge = $(`#badge-${kind}s`);
      if (!badge) continue;
      const count = pending[kind].size;
      badge.hidden = !synced;
      badge.textContent = String(count);
      badge.dataset.count = String(count);
      badge.title = `${count} pending`;
    }
    // The tab's title carries this page's count, for a reviewer working in another tab.
    const page = currentPage();
    const base = document.title.replace(/^\(\d+\) /, "");
    const count = page === "approvals" || page === "questions" ? pending[page.slice(0, -1)].size : 0;
    document.title = synced && count ? `(${count}) ${base}` : base;
  }

  // ------------------------------------------------------------------------------------
  // Live connection: WebSocket /ws with ping, backoff and the #conn-status indicator
  // ------------------------------------------------------------------------------------

  const PING_EVERY_MS = 20000;
  const SILENT_LIMIT_MS = 50000; // no frame for this long (pongs included): the link is dead
  const RETRY_FIRST_MS = 500;
  const RETRY_MAX_MS = 5000;

  const live = { socket: null, retryMs: RETRY_FIRST_MS, retryTimer: null, pingTimer: null,
    lastFrameAt: 0 };

  const CONN_TEXT = { connecting: "Connecting…", open: "Live", closed: "Disconnected" };

  function setConnState(state, detail) {
    const node = $("#conn-status");
    if (!node) return;
    node.dataset.state = state;
    node.textContent = CONN_TEXT[state];
    node.title = detail || (state === "open" ? "Live updates are on" : CONN_TEXT[state]);
  }

  function socketUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/ws`;
  }

  function connect() {
    clearTimeout(live.retryTimer);
    live.retryTimer = null;
    setConnState("connecting");
    let socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch {
      scheduleReconnect();
      return;
    }
    live.socket = socket;
    let opened = false;
    // Handlers ignore a socket that has been replaced: a dropped socket may still fire.
    socket.addEventListener("open", () => {
      if (live.socket !== socket) return;
      opened = true;
      live.lastFrameAt = Date.now();
      setConnState("open");
      startPings(socket);
    });
    socket.addEventListener("message", (event) => {
      if (live.socket !== socket) return;
      live.lastFrameAt = Date.now();
      onFrame(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (live.socket !== socket) return;
      live.socket = null;
      stopPings();
      // A refused handshake looks like any failure (code 1006): the server refuses one
      // without a valid session cookie, so ask whether the page itself is still allowed.
      if (!opened || event.code === 1008) checkSignedIn();
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const wait = live.retryMs;
    live.retryMs = Math.min(live.retryMs * 2, RETRY_MAX_MS);
    setConnState("closed", `Disconnected: reconnecting in ${(wait / 1000).toFixed(1)} s`);
    clearTimeout(live.retryTimer);
    live.retryTimer = setTimeout(connect, wait);
  }

  function startPings(socket) {
    stopPings();
    live.pingTimer = setInterval(() => {
      if (Date.now() - live.lastFrameAt > SILENT_LIMIT_MS) {
        // No pong: the connection died without a close. Drop it and start over.
        live.socket = null;
        stopPings();
        socket.close();
        scheduleReconnect();
        return;
      }
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
    }, PING_EVERY_MS);
  }

  function stopPings() {
    clearInterval(live.pingTimer);
    live.pingTimer = null;
  }

  /** Was the socket refused for want of sign-in? A 401 for this page says so. */
  async function checkSignedIn() {
    try {
      const response = await fetch(window.location.pathname, { credentials: "same-origin",
        cache: "no-store" });
      if (response.status === 401) signInAgain();
    } catch {
      /* offline: the reconnect loop keeps trying */
    }
  }

  function onFrame(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (!message || typeof message !== "object") return;
    switch (message.type) {
      case "snapshot":
        live.retryMs = RETRY_FIRST_MS; // a good connection: the next outage starts fast again
        applySnapshot(message);
        break;
      case "approval":
      case "question":
        applyUpdate(message.type, message.item);
        break;
      default:
        break; // "pong", and anything newer than this page
    }
  }

  function startLive() {
    connect();
    // Back online or back to the tab: retry now rather than at the end of the backoff.
    const retryNow = () => {
      if (!live.socket && live.retryTimer) connect();
    };
    window.addEventListener("online", retryNow);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) retryNow();
    });
  }

  // ------------------------------------------------------------------------------------
  // Card lists: pending items as cards, keyed by id, oldest first (approvals and questions)
  // ------------------------------------------------------------------------------------

  const EXPIRED_SHOWN_MS = 3000;
  const ownDecisions = new Set(); // ids decided from this page: no "decided by" toast for them

  const VERB = { approved: "Approved", rejected: "Rejected", answered: "Answered" };

  /**
   * A list of cards for one kind. `build(item)` makes a card controller:
   * { el, item, update(item), markExpired() }. `describe(item)` names the item in toasts.
   * `onRemoved(id, index, hadFocus)` lets the page move its selection.
   */
  function createCardList({ kind, container, build, describe, onRemoved = () => {},
    onAdded = () => {} }) {
    const cards = new Map();
    const empty = $('[data-testid="empty-state"]');
    const loading = $('[data-testid="loading"]');

    const sortKey = (item) => [parseTime(item.created_at) ?? 0, item.id];
    const before = (a, b) => {
      const [ta, ia] = sortKey(a);
      const [tb, ib] = sortKey(b);
      return ta !== tb ? ta < tb : ia < ib;
    };

    function ordered() {
      return Array.from(container.children).filter((node) => cards.has(node.dataset.id));
    }

    function add(item) {
      const card = build(item);
      cards.set(item.id, card);
      const next = ordered().find((node) => before(item, cards.get(node.dataset.id).item));
      container.insertBefore(card.el, next || null);
      onAdded(item.id);
    }

    function remove(id) {
      const card = cards.get(id);
      if (!card) return;
      clearTimeout(card.expiryTimer);
      const index = ordered().indexOf(card.el);
      const hadFocus = card.el.contains(document.activeElement);
      card.el.remove();
      cards.delete(id);
      refreshEmpty();
      onRemoved(id, index, hadFocus);
    }

    function refreshEmpty() {
      if (loading) loading.hidden = true;
      if (empty) empty.hidden = cards.size > 0;
    }

    function snapshot(items) {
      const present = new Set(items.map((item) => item.id));
      for (const id of Array.from(cards.keys())) {
        // Decided or expired while this page was not connected.
        if (!present.has(id)) remove(id);
      }
      for (const item of items) {
        const card = cards.get(item.id);
        // An existing card keeps its node, so a half-typed reason or answer survives.
        if (card) card.update(item);
        else add(item);
      }
      refreshEmpty();
    }

    function update(item) {
      const card = cards.get(item.id);
      if (item.status === "pending") {
        if (card) card.update(item);
        else add(item);
        refreshEmpty();
        return;
      }
      if (!card) return;
      if (item.status === "expired") {
        if (card.expiryTimer) return;
        card.markExpired();
        card.expiryTimer = setTimeout(() => remove(item.id), EXPIRED_SHOWN_MS);
        return;
      }
      remove(item.id);
      if (!ownDecisions.has(item.id)) {
        const who = item.decided_by ? ` by ${item.decided_by}` : "";
        toast(`${VERB[item.status] || "Decided"}${who}: ${describe(item)}`);
      }
    }

    subscribe(kind, { snapshot, update });
    return { cards, ordered, remove };
  }

  /** The parts every card shares: header line with agent, age and deadline, and a message. */
  function cardMeta(item) {
    const agent = el("span", { className: "agent", "data-testid": "agent" },
      marked(item.agent_id || "—"));
    const age = ageNode(item.created_at);
    const deadline = deadlineNode(item.deadline);
    const meta = el("div", { className: "card-meta" },
      el("span", { className: "meta-label" }, "agent "), agent, age, deadline);
    return { meta, agent, age, deadline };
  }

  function messageNode() {
    return el("p", { className: "card-message", "data-testid": "card-error", role: "alert",
      hidden: true });
  }

  function showMessage(node, text, tone = "error") {
    node.textContent = text;
    node.dataset.tone = tone;
    node.hidden = !text;
  }

  function refreshAge(node, iso) {
    node.dataset.age = iso || "";
    node.setAttribute("datetime", iso || "");
    node.title = iso || "";
    node.textContent = ageText(iso);
  }

  // ------------------------------------------------------------------------------------
  // Approvals page
  // ------------------------------------------------------------------------------------

  const approvals = { list: null, selectedId: null };

  function buildApprovalCard(item) {
    const path = el("code", { className: "file-path", "data-testid": "file-path" });
    const warning = el("div", { className: "warning-slot" });
    const label = el("span", { className: "status-label", "data-testid": "status-label",
      hidden: true });
    const { meta, agent, age, deadline } = cardMeta(item);
    const description = el("p", { className: "description", "data-testid": "description" });
    const diff = el("div", { className: "diff-block", "data-testid": "diff", tabindex: "0",
      "aria-label": "Diff" }, diffFragment(item));
    const approve = el("button", { type: "button", className: "btn btn-approve",
      "data-testid": "approve", title: "Approve (a)" }, "Approve");
    const reason = el("input", { type: "text", className: "reason-input",
      "data-testid": "reject-reason", placeholder: "Reason (required to reject)",
      "aria-label": "Reason (required to reject)", maxlength: "4000", autocomplete: "off" });
    const reject = el("button", { type: "button", className: "btn btn-reject",
      "data-testid": "reject", title: "Reject (Enter in the reason box)" }, "Reject");
    const message = messageNode();
    const root = el("article", { className: "card approval-card", "data-testid": "approval-card",
      "data-id": item.id, tabindex: "-1" },
      el("header", { className: "card-head" }, path, label),
      meta, warning, description, diff,
      el("div", { className: "card-actions" }, approve, reason, reject),
      message);

    const card = {
      el: root, item, busy: false, expired: false, expiryTimer: null, reason,
      update(next) {
        const diffChanged = next.diff_html !== card.item.diff_html || next.diff !== card.item.diff;
        card.item = next;
        path.replaceChildren(...marked(next.file_path));
        root.setAttribute("aria-label", `Approval: ${escapeHidden(next.file_path)}`);
        description.replaceChildren(...marked(next.description || ""));
        description.hidden = !next.description;
        agent.replaceChildren(...marked(next.agent_id || "—"));
        warning.replaceChildren(hiddenWarning("change", [["file path", next.file_path],
          ["description", next.description], ["agent", next.agent_id],
          ["diff", next.diff, true]]) || "");
        refreshAge(age, next.created_at);
        setDeadline(deadline, next.deadline);
        if (diffChanged) diff.replaceChildren(diffFragment(next)); // keeps scroll otherwise
      },
      setBusy(busy) {
        card.busy = busy;
        root.classList.toggle("is-busy", busy);
        root.setAttribute("aria-busy", String(busy));
        for (const control of [approve, reject, reason]) control.disabled = busy || card.expired;
      },
      markExpired() {
        card.expired = true;
        root.classList.add("is-expired");
        label.textContent = "expired";
        label.hidden = false;
        card.setBusy(false);
      },
      showMessage: (text, tone) => showMessage(message, text, tone),
    };
    card.update(item);

    approve.addEventListener("click", () => decide(card, "approve"));
    reject.addEventListener("click", () => decide(card, "reject"));
    reason.addEventListener("input", () => {
      if (message.dataset.tone === "warn") card.showMessage("");
    });
    reason.addEventListener("keydown", (event) => {
      if (event.isComposing) return;
      if (event.key === "Enter") {
        event.preventDefault();
        decide(card, "reject");
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // leave the box; the help overlay is not involved
        root.focus({ preventScroll: true });
      }
    });
    // Clicking or tabbing into a card selects it, so the keys act on what the reviewer sees.
    root.addEventListener("focusin", () => selectApproval(item.id, { scroll: false }));
    root.addEventListener("mousedown", () => selectApproval(item.id, { scroll: false }));
    return card;
  }

  async function decide(card, verdict) {
    if (card.busy || card.expired || !card.el.isConnected) return;
    const reason = card.reason.value.trim();
    if (verdict === "reject" && !reason) {
      card.showMessage("Give a reason to reject: it goes back to the agent.", "warn");
      card.reason.focus();
      return;
    }
    const id = card.item.id;
    const body = { user: reviewer() };
    if (reason) body.reason = reason;
    card.showMessage("");
    card.setBusy(true);
    ownDecisions.add(id);
    try {
      const updated = await api("POST",
        `/api/approvals/${encodeURIComponent(id)}/${verdict}`, body);
      // Done: the card goes now (the WebSocket's echo of the change then finds nothing).
      const status = verdict === "approve" ? "approved" : "rejected";
      applyUpdate("approval", { ...card.item, ...(validItem(updated) ? updated : {}), status });
    } catch (err) {
      ownDecisions.delete(id);
      card.setBusy(false);
      card.showMessage(err.message || String(err));
    }
  }

  function approvalCard(id) {
    return id ? approvals.list.cards.get(id) : undefined;
  }

  function selectApproval(id, { scroll = true, focus = false } = {}) {
    const previous = approvalCard(approvals.selectedId);
    if (previous && approvals.selectedId !== id) previous.el.classList.remove("is-selected");
    const card = approvalCard(id);
    approvals.selectedId = card ? id : null;
    if (!card) return;
    card.el.classList.add("is-selected");
    if (focus) card.el.focus({ preventScroll: true });
    if (scroll) card.el.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  /** The first card is selected by default, and a new first card after the last one went. */
  function ensureSelection() {
    if (approvalCard(approvals.selectedId)) return;
    const first = approvals.list.ordered()[0];
    if (first) selectApproval(first.dataset.id, { scroll: false });
  }

  function moveSelection(step) {
    const nodes = approvals.list.ordered();
    if (!nodes.length) return;
    const at = nodes.findIndex((node) => node.dataset.id === approvals.selectedId);
    const next = at < 0 ? 0 : Math.min(Math.max(at + step, 0), nodes.length - 1);
    selectApproval(nodes[next].dataset.id, { focus: true });
  }

  function onApprovalRemoved(id, index, hadFocus) {
    if (approvals.selectedId !== id) return;
    approvals.selectedId = null;
    const nodes = approvals.list.ordered();
    const next = nodes[Math.min(index, nodes.length - 1)];
    if (!next) return;
    // Keep the reviewer's place: the card that moved up takes the selection (and the focus).
    const lostFocus = hadFocus || document.activeElement === document.body;
    selectApproval(next.dataset.id, { focus: lostFocus, scroll: lostFocus });
  }

  // Keyboard shortcuts and the help overlay.

  function helpOverlay() {
    return $("#shortcuts-help");
  }

  let focusBeforeHelp = null;

  function toggleHelp(show) {
    const overlay = helpOverlay();
    if (!overlay) return;
    const open = show === undefined ? overlay.hidden : show;
    if (open === !overlay.hidden) return;
    overlay.hidden = !open;
    if (open) {
      focusBeforeHelp = document.activeElement;
      $(".dialog-close", overlay).focus();
    } else if (focusBeforeHelp && focusBeforeHelp.isConnected) {
      focusBeforeHelp.focus({ preventScroll: true });
    }
  }

  function onApprovalsKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const helpOpen = !helpOverlay().hidden;
    if (helpOpen && (event.key === "Escape" || event.key === "?")) {
      event.preventDefault();
      toggleHelp(false);
      return;
    }
    if (helpOpen || isTextEntry(event.target)) return;
    const card = approvalCard(approvals.selectedId);
    switch (event.key) {
      case "j":
        moveSelection(1);
        break;
      case "k":
        moveSelection(-1);
        break;
      case "a":
        if (card) decide(card, "approve");
        break;
      case "r":
        if (!card || card.busy || card.expired) return;
        card.reason.focus(); // preventDefault below keeps the "r" out of the box
        break;
      case "?":
        toggleHelp(true);
        break;
      default:
        return;
    }
    event.preventDefault();
  }

  function initApprovals() {
    const container = $("#approval-list");
    approvals.list = createCardList({
      kind: "approval",
      container,
      build: buildApprovalCard,
      describe: (item) => item.file_path,
      onRemoved: onApprovalRemoved,
      onAdded: () => ensureSelection(),
    });
    subscribe("approval", { snapshot: ensureSelection, update: ensureSelection });
    document.addEventListener("keydown", onApprovalsKey);

    const overlay = helpOverlay();
    $(".dialog-close", overlay).addEventListener("click", () => toggleHelp(false));
    overlay.addEventListener("click", (event) => {
      if (event.target === overlay) toggleHelp(false); // a click beside the dialog
    });
    $(".help-toggle").addEventListener("click", () => toggleHelp());
  }

  // ------------------------------------------------------------------------------------
  // Questions page
  // ------------------------------------------------------------------------------------

  function buildQuestionCard(item) {
    const question = el("p", { className: "question-text", "data-testid": "question-text" });
    const { meta, agent, age, deadline } = cardMeta(item);
    const label = el("span", { className: "status-label", "data-testid": "status-label",
      hidden: true });
    const context = el("pre", { className: "context", "data-testid": "context" });
    const warning = el("div", { className: "warning-slot" });
    const contextBlock = el("div", { className: "context-block" },
      el("div", { className: "block-label" }, "Context"), context);
    const answer = el("textarea", { className: "answer-input", "data-testid": "answer-input",
      rows: "3", placeholder: "Your answer (Ctrl+Enter sends it)", "aria-label": "Answer",
      maxlength: "100000" });
    const submit = el("button", { type: "button", className: "btn btn-primary",
      "data-testid": "answer-submit", title: "Send the answer (Ctrl+Enter)" }, "Answer");
    const message = messageNode();
    const root = el("article", { className: "card question-card", "data-testid": "question-card",
      "data-id": item.id, tabindex: "-1" },
      el("header", { className: "card-head" }, el("span", { className: "card-kind" }, "Question"),
        label),
      meta, warning, question, contextBlock, answer,
      el("div", { className: "card-actions" }, submit), message);

    const card = {
      el: root, item, busy: false, expired: false, expiryTimer: null, answer,
      update(next) {
        card.item = next;
        question.replaceChildren(...marked(next.question || ""));
        const text = typeof next.context_text === "string" ? next.context_text : "";
        context.replaceChildren(...marked(text));
        contextBlock.hidden = !text;
        agent.replaceChildren(...marked(next.agent_id || "—"));
        warning.replaceChildren(hiddenWarning("question", [["question", next.question],
          ["context", text, true], ["agent", next.agent_id]]) || "");
        refreshAge(age, next.created_at);
        setDeadline(deadline, next.deadline);
      },
      setBusy(busy) {
        card.busy = busy;
        root.classList.toggle("is-busy", busy);
        root.setAttribute("aria-busy", String(busy));
        answer.disabled = busy || card.expired;
        submit.disabled = busy || card.expired;
      },
      markExpired() {
        card.expired = true;
        root.classList.add("is-expired");
        label.textContent = "expired";
        label.hidden = false;
        card.setBusy(false);
      },
      showMessage: (text, tone) => showMessage(message, text, tone),
    };
    card.update(item);

    submit.addEventListener("click", () => sendAnswer(card));
    answer.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.isComposing) {
        event.preventDefault();
        sendAnswer(card);
      }
    });
    answer.addEventListener("input", () => {
      if (message.dataset.tone === "warn") card.showMessage("");
    });
    return card;
  }

  async function sendAnswer(card) {
    if (card.busy || card.expired || !card.el.isConnected) return;
    const response = card.answer.value;
    if (!response.trim()) {
      card.showMessage("Write an answer first.", "warn");
      card.answer.focus();
      return;
    }
    const id = card.item.id;
    card.showMessage("");
    card.setBusy(true);
    ownDecisions.add(id);
    try {
      const updated = await api("POST", `/api/questions/${encodeURIComponent(id)}/answer`,
        { user: reviewer(), response });
      applyUpdate("question",
        { ...card.item, ...(validItem(updated) ? updated : {}), status: "answered" });
    } catch (err) {
      ownDecisions.delete(id);
      card.setBusy(false);
      card.showMessage(err.message || String(err));
    }
  }

  function initQuestions() {
    createCardList({
      kind: "question",
      container: $("#question-list"),
      build: buildQuestionCard,
      describe: (item) => {
        const text = String(item.question || "");
        return text.length > 80 ? `${text.slice(0, 80)}…` : text;
      },
      onRemoved: (id, index, hadFocus) => {
        // Keep keyboard users in the list: focus the card that took the place.
        if (!hadFocus) return;
        const next = $$('[data-testid="question-card"]')[index] ||
          $$('[data-testid="question-card"]').pop();
        if (next) next.focus({ preventScroll: true });
      },
    });
  }

  // ------------------------------------------------------------------------------------
  // History page
  // ------------------------------------------------------------------------------------

  const HISTORY_LIMIT = 200;
  const OUTCOMES = {
    approvals: ["approved", "rejected", "expired"],
    questions: ["answered", "expired"],
  };
  const FILTERS = ["kind", "agent", "outcome", "since", "until"];
  const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

  const historyState = { controller: null };

  function filterInput(name) {
    return $(`#filter-${name}`);
  }

  function readFilters() {
    const values = {};
    for (const name of FILTERS) values[name] = filterInput(name).value.trim();
    if (!OUTCOMES[values.kind]) values.kind = "approvals";
    if (!OUTCOMES[values.kind].includes(values.outcome)) values.outcome = "";
    for (const name of ["since", "until"]) {
      if (!DATE_RE.test(values[name])) values[name] = "";
    }
    return values;
  }

  /** kind first and limit always; empty filters are left out (the server takes them as "any"). */
  function historyQuery(filters) {
    const params = new URLSearchParams();
    params.set("kind", filters.kind);
    for (const name of ["agent", "outcome", "since", "until"]) {
      if (filters[name]) params.set(name, filters[name]);
    }
    params.set("limit", String(HISTORY_LIMIT));
    return params.toString();
  }

  function fillOutcomes(kind, chosen) {
    const select = filterInput("outcome");
    const options = [el("option", { value: "" }, "any")]
      .concat(OUTCOMES[kind].map((name) => el("option", { value: name }, name)));
    select.replaceChildren(...options);
    select.value = OUTCOMES[kind].includes(chosen) ? chosen : "";
  }

  /** Filters come from, and go back to, the address: a reload or a bookmark keeps them. */
  function filtersFromAddress() {
    const params = new URLSearchParams(window.location.search);
    const kind = OUTCOMES[params.get("kind")] ? params.get("kind") : "approvals";
    filterInput("kind").value = kind;
    filterInput("agent").value = params.get("agent") || "";
    for (const name of ["since", "until"]) {
      const value = params.get(name) || "";
      filterInput(name).value = DATE_RE.test(value) ? value : "";
    }
    fillOutcomes(kind, params.get("outcome") || "");
  }

  function filtersToAddress(filters) {
    const params = new URLSearchParams();
    for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
    const search = params.toString();
    const url = `${window.location.pathname}${search ? `?${search}` : ""}`;
    window.history.replaceState(null, "", url);
  }

  function setHistoryStatus(text, tone = "") {
    const node = $("#history-status");
    node.textContent = text;
    node.dataset.tone = tone;
  }

  async function loadHistory() {
    const filters = readFilters();
    const query = historyQuery(filters);
    const url = `/api/history?${query}`;
    $("#export-csv").href = `${url}&format=csv`;
    $("#export-json").href = `${url}&format=json`;
    filtersToAddress(filters);

    if (historyState.controller) historyState.controller.abort(); // only the latest counts
    const controller = new AbortController();
    historyState.controller = controller;
    setHistoryStatus("Loading…");
    $("#history-table").classList.add("is-loading");
    try {
      const data = await api("GET", url, undefined, controller.signal);
      const items = data && Array.isArray(data.items) ? data.items.filter(validItem) : [];
      renderHistory(filters.kind, items);
      const noun = filters.kind === "approvals" ? "approval" : "question";
      const count = `${items.length} decided ${noun}${items.length === 1 ? "" : "s"}`;
      setHistoryStatus(items.length >= HISTORY_LIMIT
        ? `${count}: the newest ${HISTORY_LIMIT} (narrow the filters or export for more)` : count);
    } catch (err) {
      if (err && err.name === "AbortError") return;
      setHistoryStatus(err.message || String(err), "error");
    } finally {
      if (historyState.controller === controller) {
        historyState.controller = null;
        $("#history-table").classList.remove("is-loading");
      }
    }
  }

  const HISTORY_COLUMNS = {
    approvals: [
      ["File", (item) => el("code", { className: "file-path",
        title: escapeHidden(item.file_path) }, marked(item.file_path))],
      ["Agent", (item) => item.agent_id, "agent"],
      ["Outcome", (item) => outcomePill(item.status)],
      ["Reason", (item) => clamped(item.reason)],
      ["Decided by", (item) => item.decided_by],
      ["Created", (item) => timeCell(item.created_at)],
      ["Decided", (item) => timeCell(item.decided_at)],
      ["Time to decision", (item) => decisionTime(item, item.decided_at), "num"],
    ],
    questions: [
      ["Question", (item) => clamped(item.question)],
      ["Agent", (item) => item.agent_id, "agent"],
      ["Outcome", (item) => outcomePill(item.status)],
      ["Response", (item) => clamped(item.response)],
      ["Decided by", (item) => item.decided_by],
      ["Created", (item) => timeCell(item.created_at)],
      ["Answered", (item) => timeCell(item.response_at)],
      ["Time to answer", (item) => decisionTime(item, item.response_at), "num"],
    ],
  };

  function outcomePill(status) {
    return el("span", { className: `pill pill-${status}` }, status || "—");
  }

  /** Long free text: a few lines in the table, the whole of it on hover. */
  function clamped(text) {
    if (!text) return "—";
    return el("span", { className: "clamp", title: escapeHidden(text) }, marked(text));
  }

  function timeCell(iso) {
    return iso ? el("time", { datetime: iso, title: iso }, dateTime(iso)) : "—";
  }

  /** Expired items were not decided by anyone: no time to decision for them. */
  function decisionTime(item, endIso) {
    const start = parseTime(item.created_at);
    const end = parseTime(endIso);
    if (item.status === "expired" || start === null || end === null) return "—";
    return duration(end - start);
  }

  function renderHistory(kind, items) {
    const table = $("#history-table");
    const columns = HISTORY_COLUMNS[kind];
    table.dataset.kind = kind;
    $("thead", table).replaceChildren(el("tr", {},
      columns.map(([title, , cls]) => el("th", { scope: "col", className: cls }, title))));
    const rows = items.map((item) => el("tr",
      { "data-testid": "history-row", "data-id": item.id, "data-status": item.status },
      columns.map(([, cell, cls]) => {
        const value = cell(item);
        if (value === null || value === undefined || value === "") {
          return el("td", { className: cls }, "—");
        }
        return el("td", { className: cls }, typeof value === "string" ? marked(value) : value);
      })));
    if (!rows.length) {
      const what = kind === "approvals" ? "decided approvals" : "answered or expired questions";
      rows.push(el("tr", { className: "empty-row" },
        el("td", { colspan: String(columns.length) }, `No ${what} match these filters.`)));
    }
    $("tbody", table).replaceChildren(...rows);
  }

  function initHistory() {
    const form = $("#history-filters");
    filtersFromAddress();
    filterInput("kind").addEventListener("change", () => {
      fillOutcomes(filterInput("kind").value, filterInput("outcome").value);
    });
    // Any filter change reloads (the kind handler above runs first: it was added first).
    form.addEventListener("change", (event) => {
      if (event.target !== filterInput("agent")) loadHistory();
    });
    const typed = debounce(loadHistory, 350);
    filterInput("agent").addEventListener("input", typed);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      loadHistory();
    });
    loadHistory();
  }

  // ------------------------------------------------------------------------------------
  // Dashboard page
  // ------------------------------------------------------------------------------------

  const DASHBOARD_EVERY_MS = 5000;
  const dashboard = { timer: null, busy: false };

  function setTile(id, value, sub = "", tone = "") {
    const tile = $(`#${id}`);
    if (!tile) return;
    $(".tile-value", tile).textContent = value;
    $(".tile-sub", tile).textContent = sub;
    tile.dataset.tone = tone;
  }

  function renderDashboard(data) {
    const pendingCounts = data.pending || {};
    const today = (data.llm && data.llm.today) || {};
    const decisions = data.decisions || {};
    const approvalsWaiting = Number(pendingCounts.approvals || 0);
    const questionsWaiting = Number(pendingCounts.questions || 0);
    setTile("tile-pending-approvals", plainCount(approvalsWaiting),
      approvalsWaiting ? "waiting for a reviewer" : "nothing waiting",
      approvalsWaiting ? "attention" : "");
    setTile("tile-pending-questions", plainCount(questionsWaiting),
      questionsWaiting ? "waiting for an answer" : "nothing waiting",
      questionsWaiting ? "attention" : "");
    const errors = Number(today.errors || 0);
    setTile("tile-llm-requests", plainCount(today.requests),
      `${plainCount(errors)} error${errors === 1 ? "" : "s"}`, errors ? "error" : "");
    const prompt = Number(today.prompt_tokens || 0);
    const completion = Number(today.completion_tokens || 0);
    setTile("tile-tokens-today", grouped(prompt + completion),
      `${grouped(prompt)} prompt · ${grouped(completion)} completion`);
    setTile("tile-cost-today", usd(today.cost_usd), "USD");
    const count = Number(decisions.count || 0);
    setTile("tile-decision-time", duration(decisions.p50_ms),
      `median (p50) · p90 ${duration(decisions.p90_ms)} · ` +
      `${plainCount(count)} decision${count === 1 ? "" : "s"}`);
    renderQueues(Array.isArray(data.queues) ? data.queues : []);
    renderModels(data.llm && Array.isArray(data.llm.by_model) ? data.llm.by_model : []);
  }

  function emptyRow(columns, text) {
    return el("tr", { className: "empty-row" }, el("td", { colspan: String(columns) }, text));
  }

  function renderQueues(queues) {
    const rows = queues.map((queue) => {
      const name = String(queue.queue || "");
      const length = Number(queue.length || 0);
      // A dead-letter queue with messages in it needs someone's attention.
      const alert = name.endsWith("_dlq") && length > 0;
      return el("tr", { "data-testid": "queue-row", "data-queue": name,
        className: alert ? "dlq-alert" : null },
        el("td", {}, el("code", {}, name),
          alert ? el("span", { className: "pill pill-rejected dlq-tag" }, "dead letters") : null),
        el("td", { className: "num" }, plainCount(length)),
        el("td", { className: "num" },
          queue.oldest_age_s === null || queue.oldest_age_s === undefined
            ? "—" : duration(Number(queue.oldest_age_s) * 1000)));
    });
    $("#queues-table tbody").replaceChildren(...(rows.length ? rows : [emptyRow(3, "No queues.")]));
  }

  function renderModels(models) {
    const rows = models.map((row) => el("tr", { "data-testid": "llm-row" },
      el("td", {}, el("code", {}, row.model || "—")),
      el("td", {}, row.tier || "—"),
      el("td", { className: "num" }, plainCount(row.requests)),
      el("td", { className: "num" }, grouped(row.prompt_tokens)),
      el("td", { className: "num" }, grouped(row.completion_tokens)),
      el("td", { className: "num" }, usd(row.cost_usd))));
    $("#llm-table tbody").replaceChildren(
      ...(rows.length ? rows : [emptyRow(6, "No LLM requests today.")]));
  }

  function setDashboardStatus(text, tone = "") {
    const node = $("#dashboard-status");
    node.textContent = text;
    node.dataset.tone = tone;
  }

  /** One request at a time; the next one 5 s after the last answer. A hidden tab waits. */
  async function pollDashboard() {
    clearTimeout(dashboard.timer);
    dashboard.timer = null;
    if (document.hidden || dashboard.busy) return;
    dashboard.busy = true;
    try {
      const data = await api("GET", "/api/dashboard");
      renderDashboard(data || {});
      const at = parseTime(data && data.generated_at);
      const d = at === null ? new Date() : new Date(at);
      setDashboardStatus(`Updated ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
        " · refreshes every 5 s");
      $(".tiles").classList.remove("is-stale");
    } catch (err) {
      setDashboardStatus(`Not updated: ${err.message || err}`, "error");
      $(".tiles").classList.add("is-stale");
    } finally {
      dashboard.busy = false;
      if (!document.hidden) dashboard.timer = setTimeout(pollDashboard, DASHBOARD_EVERY_MS);
    }
  }

  function initDashboard() {
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !dashboard.timer) pollDashboard();
    });
    pollDashboard();
  }

  // ------------------------------------------------------------------------------------
  // Start-up
  // ------------------------------------------------------------------------------------

  function currentPage() {
    const app = $("#app");
    return app ? app.dataset.page : "";
  }

  const PAGES = {
    approvals: initApprovals,
    questions: initQuestions,
    history: initHistory,
    dashboard: initDashboard,
  };

  function boot() {
    initReviewer();
    const init = PAGES[currentPage()];
    if (init) init();
    startLive(); // every page: the nav badges count pending items live
    setInterval(refreshRelativeTimes, 30000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
