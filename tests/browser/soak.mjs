// Plays an lvp stream page in headless Chromium for a long time (bench/live_soak.py) and
// reports what hls.js and the video element did, one JSON object per line on stdout:
//   node soak.mjs URL MAX_SECONDS [INTERVAL_SECONDS]
// {"type": "start", ...} once the page is loaded; {"type": "sample", ...} every INTERVAL
// seconds; {"type": "event", ...} for every hls.js error and every stall (as it happens, so a
// run cut short still has them); {"type": "end", ...} when the video ends (ENDLIST played),
// MAX_SECONDS pass, the page crashes, or SIGINT/SIGTERM arrives. play.mjs, which the tests
// use, stays as it is: this one runs for an hour and streams its figures.
import { chromium } from "playwright-core";

const [url, maxSeconds = "3600", intervalSeconds = "2"] = process.argv.slice(2);
const emit = (obj) => console.log(JSON.stringify({ wall: Date.now() / 1000, ...obj }));

// Runs in the page before its own script. The page does `window.lvp = {...}` and later
// `window.lvp.player = new Hls(...)` before loadSource(); catching that assignment lets us
// listen to hls.js from its first event (attaching after page.goto could miss early ones).
function instrument() {
  const soak = {
    errors: {}, // "type: details" -> count (fatal or not)
    fatal: [],
    stalledErrors: 0, // hls.js BUFFER_STALLED_ERROR
    stallResolved: 0,
    waiting: 0, // the video's `waiting` events after playback started
    waitingSeconds: 0, // time spent in them, until the next `playing`
    waitingSince: null,
    started: false,
    events: [], // drained by every sample
  };
  window.lvpSoak = soak;
  const now = () => Date.now() / 1000;
  const video = () => document.getElementById("video");
  // Media events do not bubble; a capturing listener on the document sees them anyway.
  document.addEventListener("playing", () => {
    soak.started = true;
    if (soak.waitingSince !== null) {
      soak.waitingSeconds += now() - soak.waitingSince;
      soak.events.push({ kind: "resumed", after: now() - soak.waitingSince, ct: video().currentTime });
      soak.waitingSince = null;
    }
  }, true);
  // Seeks (hls.js jumping to the live edge or over a gap) explain a brief `waiting`.
  document.addEventListener("seeking", () => {
    if (soak.started) soak.events.push({ kind: "seeking", ct: video().currentTime });
  }, true);
  document.addEventListener("waiting", () => {
    const v = video();
    if (!soak.started || v.currentTime <= 0) return; // start-up buffering is not a stall
    soak.waiting += 1;
    soak.waitingSince = now();
    soak.events.push({ kind: "waiting", ct: v.currentTime });
  }, true);
  const attach = (hls) => {
    const Hls = window.Hls;
    hls.on(Hls.Events.ERROR, (_, data) => {
      const key = `${data.type}: ${data.details}`;
      soak.errors[key] = (soak.errors[key] || 0) + 1;
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) soak.stalledErrors += 1;
      if (data.fatal) soak.fatal.push(key);
      soak.events.push({ kind: "hls_error", type: data.type, details: data.details,
                         fatal: !!data.fatal, ct: video() ? video().currentTime : null });
    });
    if (Hls.Events.STALL_RESOLVED) {
      hls.on(Hls.Events.STALL_RESOLVED, () => { soak.stallResolved += 1; });
    }
  };
  let real;
  Object.defineProperty(window, "lvp", {
    configurable: true,
    get: () => real,
    set: (value) => {
      real = new Proxy(value, {
        set(target, key, v) {
          target[key] = v;
          if (key === "player" && v) attach(v);
          return true;
        },
      });
    },
  });
}

// Everything a sample reports, read in the page.
function snapshot() {
  const v = document.getElementById("video");
  const soak = window.lvpSoak;
  const hls = window.lvp && window.lvp.player;
  const ct = v.currentTime;
  let ahead = 0;
  for (let i = 0; i < v.buffered.length; i++) {
    if (v.buffered.start(i) <= ct + 0.1 && ct <= v.buffered.end(i)) ahead = v.buffered.end(i) - ct;
  }
  const seekEnd = v.seekable.length ? v.seekable.end(v.seekable.length - 1) : null;
  const quality = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  const date = hls && hls.playingDate;
  const events = soak.events;
  soak.events = [];
  return {
    ct, paused: v.paused, ended: v.ended, ready: v.readyState,
    ahead, // seconds buffered past currentTime
    edge: seekEnd === null ? null : seekEnd - ct, // to the end of the seekable range
    latency: hls ? hls.latency : null, // hls.js: distance from its live edge estimate
    live_sync: hls ? hls.liveSyncPosition : null,
    target_latency: hls ? hls.targetLatency : null,
    // PROGRAM-DATE-TIME of what is on screen vs the clock: how long after its due time a
    // frame is seen (publish lag + player distance).
    behind_wall: date ? Date.now() / 1000 - date.getTime() / 1000 : null,
    dropped: quality ? quality.droppedVideoFrames : null,
    decoded: quality ? quality.totalVideoFrames : null,
    waiting: soak.waiting,
    waiting_seconds: soak.waitingSeconds + (soak.waitingSince === null ? 0
      : Date.now() / 1000 - soak.waitingSince),
    stalled_errors: soak.stalledErrors, stall_resolved: soak.stallResolved,
    errors: soak.errors, fatal: soak.fatal, hls: !!hls, events,
    note: document.getElementById("note").textContent,
  };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
});
let stop = null;
const stopped = new Promise((resolve) => { stop = resolve; });
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => stop(sig));
let why = "max_seconds";
let last = null;
try {
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on("console", (msg) => {
    if (msg.type() === "error" && consoleErrors.length < 50) consoleErrors.push(msg.text());
  });
  page.on("crash", () => stop("page_crashed"));
  await page.addInitScript(instrument);
  await page.goto(url);
  emit({ type: "start", url });
  const deadline = Date.now() + Number(maxSeconds) * 1000;
  const interval = Number(intervalSeconds) * 1000;
  while (Date.now() < deadline) {
    last = await page.evaluate(snapshot);
    for (const e of last.events) emit({ type: "event", ...e });
    delete last.events;
    emit({ type: "sample", ...last });
    if (last.ended) { why = "ended"; break; }
    const signal = await Promise.race([
      stopped, new Promise((r) => setTimeout(() => r(null), interval))]);
    if (signal) { why = signal; break; }
  }
  if (why !== "page_crashed") {
    last = await page.evaluate(snapshot).catch(() => last);
    if (last) {
      for (const e of last.events || []) emit({ type: "event", ...e });
      delete last.events;
    }
  }
  emit({ type: "end", why, last, console: consoleErrors });
} catch (err) {
  emit({ type: "end", why: "error", error: String(err), last });
  process.exitCode = 1;
} finally {
  await browser.close();
}
