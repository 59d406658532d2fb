// The demo page: sends the review to POST /v1/explain and shades each word by its contribution.
// Every piece of text from the user or the server is inserted with textContent, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("review-form");
  const review = $("review");
  const button = $("analyse");
  const errorBox = $("error");
  const result = $("result");

  // Shades follow the change in log-odds a word makes, logit(p) - logit(p without it): a confident
  // prediction (p = 0.9999) hardly moves in probability when one word goes although the word still
  // counts, and log-odds show it. Relative to the review's largest change, but never stronger than a
  // change of MIN_SCALE would earn (0.04 in log-odds is 0.01 in probability near 50%), so noise stays pale.
  const MIN_SCALE = 0.04;
  // Words whose change is under this fraction of the largest one stay unshaded.
  const NO_SHADE_BELOW = 0.05;
  const MIN_ALPHA = 0.12;
  const MAX_ALPHA = 0.62;
  const GREEN = "22, 163, 74";
  const RED = "220, 38, 38";

  // While a quick first model serves, look for the full one this often (it replaces it by itself).
  const QUICK_POLL_MS = 10000;
  const QUICK_TITLE = "A quick model, trained in about a minute for a first look. The full model is " +
    "being trained and replaces it automatically; this badge changes when it does.";

  let model = { name: null, version: null, quick: null };
  let quickPoll = null;

  function percent(p) {
    return (100 * p).toFixed(1) + "%";
  }

  function signed(x) {
    return (x >= 0 ? "+" : "\u2212") + Math.abs(x).toFixed(4);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  // -- model version and report link --------------------------------------------------------
  async function showModel(name, version, quick) {
    clearTimeout(quickPoll);
    if (quick) quickPoll = setTimeout(loadModel, QUICK_POLL_MS);
    if (name === model.name && version === model.version && quick === model.quick) return;
    const sameVersion = name === model.name && version === model.version;
    model = { name: name, version: version, quick: quick };
    const badge = $("model-version");
    badge.textContent = name + " \u00b7 v" + version + (quick ? " \u00b7 quick model" : "");
    badge.classList.toggle("badge-quick", quick);
    badge.title = quick ? QUICK_TITLE : "Model version serving this page";
    if (sameVersion) return;
    const link = $("report-link");
    const url = "/v1/models/" + encodeURIComponent(name) + "/report";
    let available = false;
    try {
      available = (await fetch(url, { method: "HEAD" })).ok;
    } catch (e) {
      available = false;
    }
    link.href = url;
    link.textContent = "Evaluation report (v" + version + ")";
    link.hidden = !available;
    $("report-missing").hidden = available;
  }

  async function loadModel() {
    try {
      const response = await fetch("/readyz");
      const body = await response.json();
      if (response.ok) {
        await showModel(body.model_name, body.model_version, body.quick === true);
      } else {
        $("model-version").textContent = "no model loaded yet";
      }
    } catch (e) {
      $("model-version").textContent = "service unreachable";
    }
  }

  // -- rendering ----------------------------------------------------------------------------
  function logOdds(p) {
    const q = Math.min(Math.max(p, 1e-12), 1 - 1e-12);
    return Math.log(q / (1 - q));
  }

  // The word's change in log-odds; same sign as its contribution (a change in probability).
  function weight(token, probability) {
    return logOdds(probability) - logOdds(probability - token.contribution);
  }

  function shadeScale(tokens, probability) {
    return Math.max(MIN_SCALE, ...tokens.map((t) => Math.abs(weight(t, probability))));
  }

  function shade(contribution, scale) {
    const strength = Math.min(1, Math.abs(contribution) / scale);
    if (!(strength >= NO_SHADE_BELOW)) return null;
    const alpha = MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * strength;
    return "rgba(" + (contribution > 0 ? GREEN : RED) + ", " + alpha.toFixed(3) + ")";
  }

  function tokenElement(token, probability, scale) {
    const span = document.createElement("span");
    span.className = "token" + (token.known ? "" : " token-unknown");
    span.textContent = token.token;
    const background = shade(weight(token, probability), scale);
    if (background !== null) {
      span.style.backgroundColor = background;
      span.classList.add(token.contribution > 0 ? "token-pos" : "token-neg");
    }
    span.dataset.contribution = String(token.contribution);
    let tip = signed(token.contribution) + " \u00b7 without this word: " +
      percent(probability - token.contribution) + " positive";
    if (!token.known) tip += " \u00b7 not in the vocabulary (read as an unknown word)";
    span.title = tip;
    return span;
  }

  function gapElement(count) {
    const span = document.createElement("span");
    span.className = "gap";
    span.textContent = "\u2026 " + count + " word" + (count === 1 ? "" : "s") + " not read by the model \u2026";
    span.title = "Long reviews keep only their beginning and end.";
    return span;
  }

  function render(body) {
    const positive = body.label === "positive";
    const label = $("label");
    label.textContent = positive ? "Positive" : "Negative";
    label.className = "label-pill " + (positive ? "is-positive" : "is-negative");
    $("probability").textContent = percent(body.probability) + " probability positive";

    const fill = $("bar-fill");
    fill.style.width = (100 * body.probability).toFixed(1) + "%";
    fill.className = "bar-fill " + (positive ? "is-positive" : "is-negative");
    $("bar").setAttribute("aria-valuenow", (100 * body.probability).toFixed(1));

    const tokens = $("tokens");
    tokens.replaceChildren();
    const scale = shadeScale(body.tokens, body.probability);
    let next = 0;
    for (const token of body.tokens) {
      if (token.position > next) tokens.append(gapElement(token.position - next), " ");
      tokens.append(tokenElement(token, body.probability, scale), " ");
      next = token.position + 1;
    }
    if (body.tokens_in_text > next) tokens.append(gapElement(body.tokens_in_text - next));
    if (body.tokens.length === 0) {
      const empty = document.createElement("span");
      empty.className = "muted";
      empty.textContent = "No words the model could read.";
      tokens.append(empty);
    }

    const unknown = body.tokens.filter((t) => !t.known).length;
    const parts = [body.tokens.length + " words explained"];
    if (unknown) parts.push(unknown + " not in the vocabulary");
    if (body.truncated) parts.push("middle of the review not read by the model");
    parts.push("model " + body.model_name + " v" + body.model_version);
    $("meta").textContent = parts.join(" \u00b7 ");
    result.hidden = false;
    if (body.model_name !== model.name || body.model_version !== model.version) loadModel();
  }

  // -- the request --------------------------------------------------------------------------
  async function analyse() {
    const text = review.value;
    errorBox.hidden = true;
    if (!text.trim()) {
      showError("Type a review first.");
      review.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Analysing\u2026";
    try {
      const response = await fetch("/v1/explain", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: text }),
      });
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        body = null;
      }
      if (response.ok && body) {
        render(body);
      } else {
        const message = body && body.error ? body.error.message : "the service answered " + response.status;
        showError("Could not analyse this review: " + message);
      }
    } catch (e) {
      showError("Could not reach the service. Is it running?");
    } finally {
      button.disabled = false;
      button.textContent = "Analyse";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    analyse();
  });
  review.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      analyse();
    }
  });
  loadModel();
})();
