// soundalike radio page: one <audio> player plays the queue in order (the next track on `ended`), with
// previous / next, play now, remove, "more like this" and more tracks from /api/radio when the queue runs low.
// Without JavaScript the page is still a readable list whose first track plays.
(function () {
  "use strict";
  var root = document.getElementById("radio");
  var audio = document.getElementById("radio-audio");
  if (!root || !audio || !window.fetch) return;
  var queueList = document.getElementById("radio-queue");
  var playedList = document.getElementById("radio-played");
  var queueEmpty = document.getElementById("radio-queue-empty");
  var status = document.getElementById("radio-status");
  var m3u8 = document.getElementById("radio-m3u8");
  var prevButton = document.getElementById("radio-prev");
  var nextButton = document.getElementById("radio-next");
  var moreButton = document.getElementById("radio-more");
  var MAX_EXCLUDE = 1000; // what /api/radio accepts
  var moreN = parseInt(root.dataset.moreN || "10", 10);
  var low = parseInt(root.dataset.low || "3", 10);
  var n = parseInt(root.dataset.n || "20", 10);

  var state = {
    seeds: (root.dataset.seeds || "").split(",").filter(Boolean).map(Number),
    current: null,
    queue: [],
    played: [],
    removed: [],
    loading: false,
    exhausted: false,
    waiting: false,
    errors: 0,
  };

  function basename(path) { return path.split("/").pop(); }
  function shortpath(path) { // the file with its folder, as the server's `shortpath` filter
    var parts = path.split("/").filter(Boolean);
    return parts.slice(-2).join("/");
  }
  function clock(seconds) {
    if (seconds === null || seconds === undefined || seconds === "" || !isFinite(seconds)) return "–";
    var total = Math.round(Number(seconds));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    var mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }
  function fromItem(li) {
    var d = li.dataset;
    return { id: Number(d.trackId), title: d.title, artist: d.artist, path: d.path, duration: d.duration === "" ? null : Number(d.duration) };
  }
  function fromApi(t) {
    return { id: t.track_id, title: t.title || basename(t.path), artist: t.artist || "", path: shortpath(t.path), duration: t.duration };
  }
  function audioUrl(id) { return root.dataset.tracks + "/" + id + "/audio"; }
  function pageUrl(id) { return root.dataset.trackPage + id; }
  function say(text) { status.textContent = text || ""; }

  function element(tag, cls, text) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined) el.textContent = text;
    return el;
  }
  function who(t) {
    var box = element("div", "who");
    var a = element("a", "title", t.title);
    a.href = pageUrl(t.id);
    box.appendChild(a);
    box.appendChild(element("span", t.artist ? "artist" : "artist unknown", t.artist || "unknown artist"));
    box.appendChild(element("span", "file", t.path + " · " + clock(t.duration)));
    return box;
  }
  function row(t, pos, actions) {
    var li = element("li", "radio-item");
    li.dataset.trackId = String(t.id);
    li.appendChild(element("span", "pos", String(pos)));
    li.appendChild(who(t));
    if (actions) {
      var box = element("div", "item-actions");
      var play = element("button", "play-now secondary-button", "Play now");
      play.type = "button";
      play.setAttribute("aria-label", "Play " + t.title + " now");
      play.addEventListener("click", function () { playNow(t.id); });
      var remove = element("button", "remove secondary-button", "Remove");
      remove.type = "button";
      remove.setAttribute("aria-label", "Remove " + t.title + " from the queue");
      remove.addEventListener("click", function () { removeTrack(t.id); });
      box.appendChild(play);
      box.appendChild(remove);
      li.appendChild(box);
    }
    return li;
  }

  function render() {
    var t = state.current;
    var title = document.getElementById("now-title");
    title.textContent = "";
    var a = element("a", "", t.title);
    a.href = pageUrl(t.id);
    title.appendChild(a);
    document.getElementById("now-artist").textContent = t.artist || "unknown artist";
    document.getElementById("now-path").textContent = t.path;
    document.getElementById("now-duration").textContent = clock(t.duration);
    document.title = t.title + " · radio · soundalike";
    audio.dataset.trackId = String(t.id);

    queueList.textContent = "";
    state.queue.forEach(function (q, i) { queueList.appendChild(row(q, i + 1, true)); });
    queueEmpty.hidden = state.queue.length > 0;
    playedList.textContent = "";
    state.played.forEach(function (p, i) { playedList.appendChild(row(p, i + 1, false)); });
    playedList.parentElement.hidden = state.played.length === 0;
    prevButton.disabled = state.played.length === 0;
    nextButton.disabled = state.queue.length === 0;

    // the download is the queue as it is now: the track playing and what comes after it
    var ids = [t.id].concat(state.queue.map(function (q) { return q.id; }));
    m3u8.href = root.dataset.m3u8 + "?" + ids.map(function (id) { return "track=" + id; }).join("&");
    if ("mediaSession" in navigator && window.MediaMetadata) {
      navigator.mediaSession.metadata = new MediaMetadata({ title: t.title, artist: t.artist || "" });
    }
  }

  function load(autoplay) {
    audio.src = audioUrl(state.current.id);
    render();
    if (autoplay) {
      var played = audio.play();
      if (played && played.catch) played.catch(function () { /* the browser wants a click first */ });
    }
  }

  function next() {
    if (!state.queue.length) {
      state.waiting = state.loading; // the tracks being fetched will follow on
      say(state.loading ? "Finding more tracks…" : "That was the last track.");
      return;
    }
    state.waiting = false;
    state.played.push(state.current);
    state.current = state.queue.shift();
    load(true);
    topUp();
  }

  function previous() {
    if (!state.played.length) { audio.currentTime = 0; return; }
    state.queue.unshift(state.current);
    state.current = state.played.pop();
    load(true);
  }

  function playNow(id) {
    var i = state.queue.findIndex(function (q) { return q.id === id; });
    if (i < 0) return;
    state.played.push(state.current);
    state.current = state.queue.splice(i, 1)[0];
    load(true);
    topUp();
  }

  function removeTrack(id) {
    state.queue = state.queue.filter(function (q) { return q.id !== id; });
    state.removed.push(id);
    render();
    topUp();
  }

  function ids(list) { return list.map(function (t) { return t.id; }); }

  function ask(seeds, count, exclude) {
    var params = new URLSearchParams();
    seeds.forEach(function (s) { params.append("seed", String(s)); });
    params.set("n", String(count));
    exclude.slice(-MAX_EXCLUDE).forEach(function (id) { params.append("exclude", String(id)); });
    return fetch(root.dataset.api + "?" + params.toString(), { headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
        return body.tracks.map(fromApi);
      });
    });
  }

  function busy(on) {
    state.loading = on;
    root.classList.toggle("loading", on);
    moreButton.disabled = on;
  }

  function topUp() {
    if (state.loading || state.exhausted || state.queue.length >= low) return;
    busy(true);
    say("Finding more tracks…");
    // never again what was played, is playing, is queued or was removed
    var exclude = ids(state.played).concat([state.current.id], ids(state.queue), state.removed);
    ask(state.seeds, moreN, exclude).then(function (tracks) {
      var known = new Set(exclude);
      var fresh = tracks.filter(function (t) { return !known.has(t.id); });
      if (!fresh.length) state.exhausted = true;
      state.queue = state.queue.concat(fresh);
      say(fresh.length ? "" : "The library has nothing more like these.");
    }).catch(function (err) {
      say("Could not fetch more tracks: " + err.message);
    }).then(function () {
      busy(false);
      render();
      if (state.waiting && state.queue.length) next();
    });
  }

  function moreLikeThis() {
    if (state.loading) return;
    var seed = state.current;
    busy(true);
    say("Finding more like " + seed.title + "…");
    ask([seed.id], n, ids(state.played).concat(state.removed)).then(function (tracks) {
      state.seeds = [seed.id];
      state.queue = tracks;
      state.exhausted = false;
      say("Up next: more like " + seed.title + ".");
    }).catch(function (err) {
      say("Could not make a new radio: " + err.message);
    }).then(function () {
      busy(false);
      render();
    });
  }

  // take over the server's list
  state.current = fromItem(document.getElementById("now-playing"));
  Array.prototype.forEach.call(queueList.querySelectorAll("li.radio-item"), function (li) { state.queue.push(fromItem(li)); });
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (el) { el.hidden = false; });
  root.classList.add("scripted");

  audio.addEventListener("ended", next);
  audio.addEventListener("playing", function () { state.errors = 0; });
  audio.addEventListener("loadedmetadata", function () {
    if (!state.current.duration && isFinite(audio.duration)) {
      state.current.duration = audio.duration;
      document.getElementById("now-duration").textContent = clock(audio.duration);
    }
  });
  audio.addEventListener("error", function () {
    state.errors += 1;
    say("Could not play " + state.current.title + (state.errors < 3 && state.queue.length ? "; skipping it." : "."));
    if (state.errors < 3) next();
  });
  prevButton.addEventListener("click", previous);
  nextButton.addEventListener("click", next);
  moreButton.addEventListener("click", moreLikeThis);
  if ("mediaSession" in navigator) {
    try {
      navigator.mediaSession.setActionHandler("nexttrack", next);
      navigator.mediaSession.setActionHandler("previoustrack", previous);
    } catch (e) { /* not every browser knows every action */ }
  }
  render();
  topUp();
  // a radio is opened to be heard: start at once where the browser allows it, else wait for play
  var started = audio.play();
  if (started && started.catch) started.catch(function () { say("Press play to start the radio."); });
})();
