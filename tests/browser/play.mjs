// Plays an lvp stream page in headless Chromium and reports what the player did, as JSON:
//   node play.mjs URL SECONDS END_TIMEOUT_SECONDS
// samples: [wall seconds, video.currentTime] once a second for SECONDS; then it waits up to
// END_TIMEOUT_SECONDS for the video to end (ENDLIST reached).
import { chromium } from "playwright-core";

const [url, seconds = "30", endTimeout = "0"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
});
const result = { samples: [], fatal: [], waiting: 0, stalls: 0, ended: false, console: [] };
try {
  const page = await browser.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") result.console.push(msg.text()); });
  await page.goto(url);
  await page.evaluate(() => {
    const v = document.getElementById("video");
    // A `waiting` that ends within 0.1 s (Chromium stepping over a tiny gap, a few ms) is
    // counted but is not a stall a viewer sees; one of 0.1 s or more is.
    window.lvpWaiting = 0;
    window.lvpStalls = 0;
    window.lvpWaitStart = null;
    v.addEventListener("waiting", () => {
      if (v.currentTime > 0) { window.lvpWaiting += 1; window.lvpWaitStart = performance.now(); }
    });
    const resumed = () => {
      if (window.lvpWaitStart === null) return;
      if (performance.now() - window.lvpWaitStart >= 100) window.lvpStalls += 1;
      window.lvpWaitStart = null;
    };
    v.addEventListener("playing", resumed);
    v.addEventListener("timeupdate", resumed);
  });
  const sample = () => page.evaluate(() => {
    const v = document.getElementById("video");
    const open = window.lvpWaitStart !== null && !v.ended &&
      performance.now() - window.lvpWaitStart >= 100;
    return { ct: v.currentTime, ended: v.ended, fatal: window.lvp.fatal, waiting: window.lvpWaiting,
             stalls: window.lvpStalls + (open ? 1 : 0),
             hls: !!window.lvp.player, note: document.getElementById("note").textContent };
  });
  for (let i = 0; i < Number(seconds); i++) {
    const s = await sample();
    result.samples.push([Date.now() / 1000, s.ct]);
    result.note = s.note;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const deadline = Date.now() + Number(endTimeout) * 1000;
  let s = await sample();
  while (!s.ended && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    s = await sample();
  }
  Object.assign(result, { fatal: s.fatal, waiting: s.waiting, stalls: s.stalls, ended: s.ended, hls: s.hls,
                          final_time: s.ct, note: s.note });
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
