// nima-rt label: one photo at a time, rated 1..10 from the keyboard or the buttons.
// No framework and nothing from the internet; the server is the only source of truth
// (every answer is stored before the next photo is shown).
"use strict";

const RATER_KEY = "nima_rt_label_rater";
const $ = (id) => document.getElementById(id);
let rater = localStorage.getItem(RATER_KEY) || "";
let current = null; // {id, url} or null when nothing is left (file names never reach the page)

function setState(state) {
  document.body.dataset.state = state;
  const canRate = state === "ready";
  const canMove = state === "ready" || state === "broken";
  for (const button of document.querySelectorAll("#scores button")) button.disabled = !canRate;
  $("skip").disabled = !canMove;
  $("undo").disabled = state === "busy" || state === "loading";
}

function say(text) {
  $("message").textContent = text || "";
}

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = { error: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) {
    const problem = new Error(data.error || `${response.status}`);
    problem.status = response.status;
    throw problem;
  }
  return data;
}

function showProgress(p) {
  $("progress").textContent =
    `you: ${p.rated} rated, ${p.skipped} skipped, ${p.remaining} to go` +
    ` \u00b7 all raters: ${p.ratings} ratings, ${p.complete}/${p.images} photos have ${p.ratings_per_image}`;
  document.body.dataset.rated = String(p.rated);
}

function show(data) {
  showProgress(data.progress);
  current = data.image;
  document.body.dataset.imageId = current ? String(current.id) : "";
  const photo = $("photo");
  if (!current) {
    photo.hidden = true;
    photo.removeAttribute("src");
    $("done").hidden = false;
    setState("done");
    return;
  }
  $("done").hidden = true;
  photo.alt = "photo to rate"; // file names stay out of sight: they can bias a rating
  photo.hidden = false;
  setState("loading");
  photo.src = current.url;
}

async function send(method, path, body, doneText) {
  setState("busy");
  try {
    const data = await api(method, path, body);
    say(doneText ? doneText(data) : "");
    show(data);
  } catch (error) {
    say(error.message);
    if (error.status === 409 || error.status === 404) {
      await load(); // someone else's change or a stale page: ask again where we are
    } else {
      setState(current ? "ready" : "done");
    }
  }
}

function rate(score) {
  if (document.body.dataset.state !== "ready" || !current) return;
  send("POST", "/api/rate", { rater, image_id: current.id, score }, () => `saved ${score}`);
}

function skip() {
  const state = document.body.dataset.state;
  if ((state !== "ready" && state !== "broken") || !current) return;
  send("POST", "/api/skip", { rater, image_id: current.id }, () => "skipped");
}

function undo() {
  const state = document.body.dataset.state;
  if (state === "busy" || state === "loading" || state === "login") return;
  send("POST", "/api/undo", { rater }, () => "undone: rate this photo again");
}

async function load() {
  setState("busy");
  try {
    show(await api("POST", "/api/next", { rater }));
  } catch (error) {
    say(error.message);
    setState("done");
  }
}

function login(name) {
  rater = name.trim().replace(/\s+/g, " ");
  if (!rater) return;
  localStorage.setItem(RATER_KEY, rater);
  $("who").textContent = `rater: ${rater}`;
  $("login").hidden = true;
  $("rating").hidden = false;
  say("");
  load();
}

function askName() {
  $("login").hidden = false;
  $("rating").hidden = true;
  $("who").textContent = "";
  $("rater").value = rater;
  setState("login");
  $("rater").focus();
}

function onKey(event) {
  const state = document.body.dataset.state;
  if (state === "login" || event.altKey || event.metaKey) return;
  if (event.ctrlKey) {
    if (event.key === "z") {
      event.preventDefault();
      undo();
    }
    return;
  }
  if (event.key >= "1" && event.key <= "9" && event.key.length === 1) {
    event.preventDefault();
    rate(Number(event.key));
  } else if (event.key === "0") {
    event.preventDefault();
    rate(10);
  } else if (event.key === "s" || event.key === "S" || event.key === "ArrowRight") {
    event.preventDefault();
    skip();
  } else if (event.key === "u" || event.key === "U" || event.key === "Backspace") {
    event.preventDefault();
    undo();
  }
}

async function start() {
  try {
    const info = await api("GET", "/api/info");
    $("prompt").textContent = info.prompt;
    document.title = `${info.prompt} - nima-rt label`;
  } catch (error) {
    say(error.message);
    return;
  }
  $("photo").addEventListener("load", () => {
    if (document.body.dataset.state === "loading") setState("ready");
  });
  $("photo").addEventListener("error", () => {
    if (!current) return;
    say("the browser cannot show this photo: press S to skip it");
    setState("broken");
  });
  for (const button of document.querySelectorAll("#scores button")) {
    button.addEventListener("click", () => rate(Number(button.dataset.score)));
  }
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("switch").addEventListener("click", askName);
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("rater").value);
  });
  document.addEventListener("keydown", onKey);
  if (rater) login(rater);
  else askName();
}

document.addEventListener("DOMContentLoaded", start);
