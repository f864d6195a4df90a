// Whisperfleet's page: submits an async job (POST /v1/jobs), puts its id in the address
// (?job=...), and follows GET /v1/jobs/{id}/events with fetch (EventSource can't send the API
// key), parsing the Server-Sent Events as the body streams in and rendering each as it arrives.
// A dropped connection is resumed with Last-Event-ID; a closed tab comes back to its job from
// the address; Cancel deletes the job.
//
//   header   -> duration and chunk count      segment -> one more row in the list
//   progress -> progress bar                  footer  -> totals; exports enabled
//   error    -> the server's message          HTTP 4xx/5xx on submit -> its JSON error
//   cancelled -> the job was cancelled (here or elsewhere)
//   speakers -> the final label of each provisional one: rows and the speaker list relabelled
//
// Speakers (with "Label speakers"): each row shows its speaker, one colour per label (a fixed
// palette); the speaker list has a name field per label. A name replaces the label on the page
// and in what is sent to /v1/render, so Copy and every download carry it.
//
// The pure parts (SSE parser, time formats, the plain-text writer) live on `window.whisperfleet`
// so tests can drive them directly; SRT, VTT and the JSON formats come from /v1/render.
"use strict";

(() => {
  // ---- Server-Sent Events parser (the WHATWG event-stream algorithm, minus reconnection) ----

  /** Feed text chunks with push(); onEvent({type, data, id}) fires for every complete event.
   *  Handles events split anywhere across chunks, CRLF / LF / CR line ends, comments (": ping"),
   *  multi-line data and "field" lines without a colon. */
  function createSseParser(onEvent) {
    let buffer = "";
    let dataLines = [];
    let eventType = "";
    let lastEventId = "";

    function dispatch() {
      if (dataLines.length > 0) {
        onEvent({ type: eventType || "message", data: dataLines.join("\n"), id: lastEventId });
      }
      dataLines = [];
      eventType = "";
    }

    function processLine(line) {
      if (line === "") {
        dispatch();
        return;
      }
      if (line.startsWith(":")) return; // comment, e.g. the server's keep-alive ": ping"
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") eventType = value;
      else if (field === "data") dataLines.push(value);
      else if (field === "id" && !value.includes("\0")) lastEventId = value;
      // "retry" and unknown fields are ignored.
    }

    return {
      push(text) {
        buffer += text;
        let start = 0;
        for (;;) {
          const cr = buffer.indexOf("\r", start);
          const lf = buffer.indexOf("\n", start);
          const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
          if (end === -1) break;
          let next = end + 1;
          if (buffer[end] === "\r") {
            if (next === buffer.length) break; // "\r" may be the first half of a split "\r\n"
            if (buffer[next] === "\n") next += 1;
          }
          processLine(buffer.slice(start, end));
          start = next;
        }
        buffer = buffer.slice(start);
      },
      /** End of stream: a last line ended by a lone "\r" still counts; an unterminated event
       *  is dropped, as the spec says. */
      end() {
        if (buffer.endsWith("\r")) processLine(buffer.slice(0, -1));
        buffer = "";
        dataLines = [];
        eventType = "";
      },
    };
  }

  // ---- Times and transcript formats ----

  function splitTime(seconds) {
    const ms = Math.max(0, Math.round(seconds * 1000));
    return {
      h: Math.floor(ms / 3600000),
      m: Math.floor(ms / 60000) % 60,
      s: Math.floor(ms / 1000) % 60,
      ms: ms % 1000,
    };
  }

  const pad = (n, width = 2) => String(n).padStart(width, "0");

  /** WebVTT timestamp: 00:00:01.000 */
  function vttTime(seconds) {
    const t = splitTime(seconds);
    return `${pad(t.h)}:${pad(t.m)}:${pad(t.s)}.${pad(t.ms, 3)}`;
  }

  /** Short clock for the page: 1:05, or 1:02:05 when `withHours`. */
  function clock(seconds, withHours = false) {
    const total = Math.max(0, Math.floor(seconds));
    const h = Math.floor(total / 3600);
    const m = Math.floor(total / 60) % 60;
    const s = total % 60;
    return withHours || h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
  }

  /** One cue's text: trimmed, on one line, with no "-->" (which would end a cue's timing). */
  function cueText(text) {
    return text.replace(/\s+/g, " ").replace(/-->/g, "->").trim();
  }

  /** A speaker's label on one line, as shared/formats.py writes it. */
  const oneLine = (label) => label.split(/\s+/).filter(Boolean).join(" ");

  /** The text for Copy (downloads, in every format, come from the server's /v1/render): a line
   *  per segment, or, with speakers, a line per speaker turn, "[A] " first, as the server's. */
  function toTxt(segments) {
    if (!segments.some((s) => s.speaker)) {
      return segments.map((s) => cueText(s.text)).filter(Boolean).join("\n") + "\n";
    }
    const lines = [];
    let previous;
    for (const segment of segments) {
      const text = cueText(segment.text);
      if (!text) continue;
      const speaker = segment.speaker || null;
      if (lines.length > 0 && speaker === previous) lines[lines.length - 1] += ` ${text}`;
      else lines.push(speaker ? `[${oneLine(speaker)}] ${text}` : text);
      previous = speaker;
    }
    return lines.join("\n") + "\n";
  }

  window.whisperfleet = { createSseParser, vttTime, clock, toTxt };

  // ---- The page ----

  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $("app"),
    form: $("job-form"),
    url: $("media-url"),
    file: $("media-file"),
    dropZone: $("drop-zone"),
    fileChosen: $("file-chosen"),
    language: $("language"),
    diarize: $("diarize"),
    numSpeakers: $("num-speakers"),
    speakers: $("speakers"),
    speakerList: $("speaker-list"),
    micro: $("micro-chunk"),
    macro: $("macro-chunk"),
    apiKey: $("api-key"),
    advanced: $("advanced"),
    transcribe: $("transcribe"),
    cancel: $("cancel"),
    error: $("error"),
    errorMessage: $("error-message"),
    errorDetail: $("error-detail"),
    progress: $("progress"),
    progressLabel: $("progress-label"),
    status: $("status"),
    announcer: $("announcer"),
    segments: $("segments"),
    empty: $("empty"),
    copy: $("copy"),
    downloads: { txt: $("download-txt"), srt: $("download-srt"), vtt: $("download-vtt") },
  };

  let languageNames = {};
  let job = null; // {id, controller, segments, header, footer, failed, cancelled, lastEventId, mediaUrl,
  //                  speakers (labels, in order of first speech), names (label -> a name typed)}

  fetch("/static/languages.json")
    .then((response) => (response.ok ? response.json() : {}))
    .then((names) => {
      languageNames = names;
      const sorted = Object.entries(names).sort((a, b) => a[1].localeCompare(b[1]));
      for (const [code, name] of sorted) {
        ui.language.add(new Option(`${name[0].toUpperCase()}${name.slice(1)} (${code})`, code));
      }
    })
    .catch(() => {}); // the picker then offers automatic detection only

  function languageLabel(code) {
    const name = languageNames[code];
    return name ? `${name[0].toUpperCase()}${name.slice(1)}` : code;
  }

  function setState(state) {
    ui.app.dataset.state = state;
    const running = state === "running";
    ui.transcribe.disabled = running;
    ui.cancel.disabled = !running;
    ui.url.readOnly = running;
    ui.file.disabled = running;
    ui.segments.setAttribute("aria-busy", String(running));
    const exportable = !running && job !== null && job.segments.length > 0;
    ui.copy.disabled = !exportable;
    for (const button of Object.values(ui.downloads)) button.disabled = !exportable;
  }

  /** The visible status line; `announce` also tells screen readers (not every progress tick). */
  function setStatus(text, announce = false) {
    ui.status.textContent = text;
    if (announce) ui.announcer.textContent = text;
  }

  function setProgress(fraction) {
    const percent = Math.round(Math.min(1, Math.max(0, fraction)) * 1000) / 10;
    ui.progress.value = percent;
    ui.progressLabel.textContent = `${Math.floor(percent)}%`;
  }

  function showError(message, detail) {
    ui.errorMessage.textContent = message;
    ui.errorDetail.textContent = detail || "";
    ui.errorDetail.hidden = !detail;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.hidden = true;
    ui.errorMessage.textContent = "";
    ui.errorDetail.textContent = "";
  }

  /** "media_unavailable · HTTP 422 · param media_url" from an ErrorBody's `error`. */
  function errorDetail(error, status) {
    const parts = [];
    if (error && error.code) parts.push(error.code);
    if (status) parts.push(`HTTP ${status}`);
    if (error && error.param) parts.push(`param ${error.param}`);
    return parts.join(" · ");
  }

  function requestParams() {
    const params = {};
    if (ui.language.value) params.language = ui.language.value;
    if (ui.diarize.checked) {
      params.diarize = true;
      if (ui.numSpeakers.value !== "") params.num_speakers = Number(ui.numSpeakers.value);
    }
    if (ui.micro.value !== "") params.micro_chunk_size_sec = Number(ui.micro.value);
    if (ui.macro.value !== "") params.macro_chunk_size_sec = Number(ui.macro.value);
    return params;
  }

  const KEY_STORE = "whisperfleet.apiKey";
  ui.apiKey.value = localStorage.getItem(KEY_STORE) || "";
  ui.apiKey.addEventListener("change", () => {
    const key = ui.apiKey.value.trim();
    if (key) localStorage.setItem(KEY_STORE, key);
    else localStorage.removeItem(KEY_STORE);
  });

  /** Headers for the API: the key, when one is set. */
  function withKey(headers) {
    const key = ui.apiKey.value.trim();
    return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
  }

  /** The request for POST /v1/jobs: multipart with the chosen file, or JSON. */
  function jobRequest() {
    const file = ui.file.files && ui.file.files[0];
    const params = requestParams();
    if (file) {
      const form = new FormData();
      form.append("file", file, file.name);
      form.append("params", JSON.stringify(params));
      return { source: file.name, init: { body: form, headers: withKey({}) } };
    }
    const mediaUrl = ui.url.value.trim();
    return {
      source: mediaUrl,
      init: {
        body: JSON.stringify({ media_url: mediaUrl, params }),
        headers: withKey({ "Content-Type": "application/json" }),
      },
    };
  }

  function showChosenFile() {
    const file = ui.file.files && ui.file.files[0];
    ui.fileChosen.hidden = !file;
    ui.fileChosen.textContent = file ? `${file.name} (${(file.size / 1e6).toFixed(1)} MB)` : "";
    if (file) ui.url.value = "";
  }

  ui.diarize.addEventListener("change", () => {
    ui.numSpeakers.disabled = !ui.diarize.checked;
  });
  ui.numSpeakers.disabled = !ui.diarize.checked; // a reload may keep the box ticked

  ui.file.addEventListener("change", showChosenFile);
  ui.url.addEventListener("input", () => {
    if (ui.url.value.trim() !== "" && ui.file.value !== "") {
      ui.file.value = "";
      showChosenFile();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    ui.dropZone.addEventListener(name, (event) => {
      event.preventDefault();
      ui.dropZone.classList.add("dragging");
    });
  }
  ui.dropZone.addEventListener("dragleave", () => ui.dropZone.classList.remove("dragging"));
  ui.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.dropZone.classList.remove("dragging");
    if (event.dataTransfer && event.dataTransfer.files.length > 0) {
      ui.file.files = event.dataTransfer.files;
      showChosenFile();
    }
  });

  function appendSegment(segment) {
    const nearBottom =
      ui.segments.scrollHeight - ui.segments.scrollTop - ui.segments.clientHeight < 48;
    const withHours = job.header !== null && job.header.input_duration_sec >= 3600;
    const item = document.createElement("li");
    item.className = "segment";
    item.dataset.start = String(segment.start_time_sec);
    item.dataset.end = String(segment.end_time_sec);
    item.lang = segment.bcp47_key || "";
    const time = document.createElement("time");
    time.className = "segment-time";
    time.dateTime = `PT${segment.start_time_sec.toFixed(3)}S`;
    time.textContent = clock(segment.start_time_sec, withHours);
    time.title = `${vttTime(segment.start_time_sec)} – ${vttTime(segment.end_time_sec)}`;
    const body = document.createElement("div");
    body.className = "segment-body";
    if (segment.speaker) {
      addSpeaker(segment.speaker);
      const speaker = document.createElement("span");
      speaker.className = "segment-speaker";
      showSpeaker(speaker, segment.speaker);
      body.append(speaker);
    }
    const text = document.createElement("span");
    text.className = "segment-text";
    text.textContent = segment.text.trim();
    body.append(text);
    item.append(time, body);
    ui.segments.append(item);
    ui.empty.hidden = true;
    if (nearBottom) ui.segments.scrollTop = ui.segments.scrollHeight;
  }

  // ---- Speakers ----

  /** Colour-blind-safe (Okabe-Ito, then two more); a label keeps its colour. */
  const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f3c8d",
    "#8c8c8c"];

  function speakerColour(label) {
    const index = job.speakers.indexOf(label);
    return PALETTE[Math.max(0, index) % PALETTE.length];
  }

  /** What the page shows, copies and downloads for a label: its typed name, else the label. */
  function speakerName(label) {
    const name = job.names.get(label);
    return name && name.trim() ? oneLine(name) : label;
  }

  function showSpeaker(element, label) {
    element.dataset.speaker = label;
    element.textContent = speakerName(label);
    element.style.setProperty("--speaker-colour", speakerColour(label));
  }

  /** A label heard for the first time: a row in the speaker list, with a name field. */
  function addSpeaker(label) {
    if (job.speakers.includes(label)) return;
    job.speakers.push(label);
    const index = job.speakers.length - 1;
    const item = document.createElement("li");
    item.className = "speaker-item";
    item.style.setProperty("--speaker-colour", speakerColour(label));
    const name = document.createElement("label");
    name.htmlFor = `speaker-name-${index}`;
    name.textContent = `Speaker ${label}`;
    const input = document.createElement("input");
    input.id = `speaker-name-${index}`;
    input.type = "text";
    input.autocomplete = "off";
    input.maxLength = 64;
    input.placeholder = label;
    input.value = job.names.get(label) || "";
    input.dataset.speaker = label;
    input.addEventListener("input", () => {
      job.names.set(input.dataset.speaker, input.value);
      for (const element of ui.segments.querySelectorAll(".segment-speaker")) {
        if (element.dataset.speaker === input.dataset.speaker) {
          element.textContent = speakerName(input.dataset.speaker);
        }
      }
    });
    item.append(name, input);
    ui.speakerList.append(item);
    ui.speakers.hidden = false;
  }

  /** The `speakers` event: every provisional label becomes its final one (rows, segments,
   *  words); a name typed for a provisional label goes with it. */
  function relabel(map) {
    const labels = new Map(Object.entries(map.labels || {}));
    const final = (label) => (labels.has(label) ? labels.get(label) : label);
    for (const segment of job.segments) {
      if (segment.speaker) segment.speaker = final(segment.speaker);
      for (const word of segment.words || []) if (word.speaker) word.speaker = final(word.speaker);
      if (segment.overlapping_speakers) {
        segment.overlapping_speakers = segment.overlapping_speakers.map(final);
      }
    }
    const names = new Map();
    for (const [label, name] of job.names) {
      if (!names.has(final(label))) names.set(final(label), name);
    }
    job.names = names;
    const heard = job.speakers.map(final);
    job.speakers = [];
    ui.speakerList.replaceChildren();
    for (const label of [...(map.speakers || []), ...heard]) addSpeaker(label);
    for (const element of ui.segments.querySelectorAll(".segment-speaker")) {
      showSpeaker(element, final(element.dataset.speaker));
    }
  }

  /** The segments as the page shows them: typed names in place of labels. */
  function namedSegments() {
    return job.segments.map((segment) => {
      if (!segment.speaker) return segment;
      const named = { ...segment, speaker: speakerName(segment.speaker) };
      if (segment.words) {
        named.words = segment.words.map((word) =>
          word.speaker ? { ...word, speaker: speakerName(word.speaker) } : word,
        );
      }
      if (segment.overlapping_speakers) {
        named.overlapping_speakers = segment.overlapping_speakers.map(speakerName);
      }
      return named;
    });
  }

  function describeHeader(header) {
    const chunks = header.macro_chunks.length;
    return `${clock(header.input_duration_sec)} of audio in ${chunks} chunk${chunks === 1 ? "" : "s"}`;
  }

  function handleEvent(event) {
    if (job !== null && event.id !== "") job.lastEventId = event.id;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // not ours; the endpoint only sends JSON
    }
    switch (event.type) {
      case "header":
        job.header = data;
        setStatus(`${describeHeader(data)} · transcribing…`, true);
        break;
      case "segment":
        job.segments.push(data);
        appendSegment(data);
        break;
      case "progress": {
        setProgress(data.total_sec > 0 ? data.done_sec / data.total_sec : 0);
        const prefix = job.header ? `${describeHeader(job.header)} · ` : "";
        const count = `${data.segments} segment${data.segments === 1 ? "" : "s"}`;
        setStatus(`${prefix}${clock(data.done_sec)} transcribed · ${count}…`);
        break;
      }
      case "footer": {
        job.footer = data;
        setProgress(1);
        const languages = data.languages.map(languageLabel).join(", ") || "none";
        const parts = [
          `Done: ${clock(data.input_duration_sec)} of audio in ${data.processing_duration_sec.toFixed(1)} s`,
          `${data.speedup.toFixed(1)}× real time`,
          `${data.num_segments} segment${data.num_segments === 1 ? "" : "s"}`,
          `${data.languages.length > 1 ? "languages" : "language"}: ${languages}`,
        ];
        if (job.header) {
          const chunks = job.header.macro_chunks.length;
          parts.splice(1, 0, `${chunks} chunk${chunks === 1 ? "" : "s"}`);
        }
        setStatus(parts.join(" · "), true);
        ui.status.dataset.numSegments = String(data.num_segments);
        break;
      }
      case "speakers":
        relabel(data);
        break;
      case "cancelled":
        job.cancelled = true;
        break;
      case "error":
        job.failed = true;
        showError(
          (data.error && data.error.message) || "The transcription failed.",
          errorDetail(data.error, null),
        );
        break;
      default:
        break;
    }
  }

  async function readStream(response) {
    const parser = createSseParser(handleEvent);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
    parser.end();
  }

  async function errorFromResponse(response) {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      if (body && body.error && body.error.message) {
        return { message: body.error.message, detail: errorDetail(body.error, response.status) };
      }
    } catch {
      // not JSON: a proxy's error page, say
    }
    const snippet = text.trim().startsWith("<") ? "" : text.trim().slice(0, 300); // no HTML pages
    const reason = response.statusText ? ` ${response.statusText}` : "";
    return {
      message: snippet || `The server answered ${response.status}${reason}.`,
      detail: `HTTP ${response.status}`,
    };
  }

  function stoppedAfter(stopped) {
    const count = stopped.segments.length;
    if (count === 0) return "Stopped before any segment arrived.";
    return `Stopped after ${count} segment${count === 1 ? "" : "s"}; they are kept below.`;
  }

  const RECONNECTS = 5;

  /** The job's id in the address, so a reload or a reopened tab comes back to it. */
  function rememberJob(id) {
    const url = new URL(window.location.href);
    if (id) url.searchParams.set("job", id);
    else url.searchParams.delete("job");
    window.history.replaceState(null, "", url);
  }

  function newJob(source) {
    job = {
      id: null,
      controller: new AbortController(),
      segments: [],
      header: null,
      footer: null,
      failed: false,
      cancelled: false,
      lastEventId: null,
      mediaUrl: source,
      speakers: [],
      names: new Map(),
    };
    return job;
  }

  function resetView() {
    clearError();
    ui.segments.replaceChildren();
    ui.speakerList.replaceChildren();
    ui.speakers.hidden = true;
    ui.empty.hidden = false;
    delete ui.status.dataset.numSegments;
    setProgress(0);
  }

  async function showHttpError(response) {
    const error = await errorFromResponse(response);
    if (response.status === 401) {
      ui.advanced.open = true; // where the key goes
      ui.apiKey.focus();
      error.message += " Enter it under Advanced settings.";
    }
    showError(error.message, error.detail);
  }

  async function start() {
    resetView();
    const request = jobRequest();
    if (request.source === "") {
      showError("Paste a media URL or choose a file.", "nothing to transcribe");
      return;
    }
    const current = newJob(request.source);
    setState("running");
    setStatus(ui.file.value ? "Uploading and checking the media…" : "Checking the media…");
    try {
      const response = await fetch("/v1/jobs", {
        method: "POST",
        ...request.init,
        signal: current.controller.signal,
      });
      if (!response.ok) {
        await showHttpError(response);
        setStatus("Nothing was transcribed.", true);
        setState("error");
        return;
      }
      current.id = (await response.json()).id;
      rememberJob(current.id);
      setStatus("Queued…");
    } catch (error) {
      endWithFailure(current, error);
      return;
    }
    await follow(current);
  }

  /** Follow the job's events to its last one, resuming after the last event seen. */
  async function follow(current) {
    for (let attempt = 0; attempt <= RECONNECTS; attempt += 1) {
      try {
        const headers = withKey({ Accept: "text/event-stream" });
        if (current.lastEventId !== null) headers["Last-Event-ID"] = current.lastEventId;
        const response = await fetch(`/v1/jobs/${encodeURIComponent(current.id)}/events`, {
          headers,
          signal: current.controller.signal,
        });
        if (!response.ok) {
          await showHttpError(response);
          setStatus(stoppedAfter(current), true);
          setState("error");
          if (response.status === 404) rememberJob(null);
          return;
        }
        await readStream(response);
      } catch (error) {
        if (current.controller.signal.aborted) {
          endWithFailure(current, error);
          return;
        }
      }
      if (current.footer !== null || current.failed || current.cancelled) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(8000, 500 * 2 ** attempt)));
    }
    if (current.footer !== null) {
      setState("done");
    } else if (current.cancelled) {
      setStatus(`Cancelled · kept ${current.segments.length} segments.`, true);
      setState("cancelled");
    } else {
      if (!current.failed) {
        showError(
          "The connection closed before the transcript was complete; reload to resume.",
          `${current.segments.length} segments received`,
        );
      }
      setStatus(stoppedAfter(current), true);
      setState("error");
    }
  }

  function endWithFailure(current, error) {
    if (current.controller.signal.aborted) {
      setStatus(`Cancelled · kept ${current.segments.length} segments.`, true);
      setState("cancelled");
    } else {
      showError(`Could not reach the server: ${error.message}`, "network error");
      setStatus(stoppedAfter(current), true);
      setState("error");
    }
  }

  /** Back to a job after a reload or in a reopened tab: its events from the beginning. */
  async function resume(id) {
    resetView();
    const current = newJob(id);
    current.id = id;
    setState("running");
    setStatus("Reconnecting to the job…");
    await follow(current);
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (ui.app.dataset.state === "running") return;
    start();
  });

  ui.cancel.addEventListener("click", () => {
    if (job === null) return;
    const current = job;
    if (current.id !== null) {
      fetch(`/v1/jobs/${encodeURIComponent(current.id)}`, {
        method: "DELETE",
        headers: withKey({}),
      }).catch(() => {});
    }
    current.controller.abort();
  });

  const wanted = new URLSearchParams(window.location.search).get("job");
  if (wanted) resume(wanted);

  // ---- Copy and download ----

  function baseName() {
    let path = job.mediaUrl;
    try {
      path = new URL(job.mediaUrl).pathname;
    } catch {
      // an uploaded file's name
    }
    const name = decodeURIComponent(path.split("/").pop() || "").replace(/\.[^.]*$/, "");
    return name.replace(/[^\w.-]+/g, "_") || "transcript";
  }

  /** Subtitles and text are made by the server (`/v1/render`), as for the API and the CLI. */
  async function rendered(format) {
    const footer = job.footer || { input_duration_sec: 0, processing_duration_sec: 0, speedup: 0 };
    const segments = namedSegments();
    const output = {
      segments,
      input_duration_sec: job.header ? job.header.input_duration_sec : footer.input_duration_sec,
      processing_duration_sec: footer.processing_duration_sec,
      speedup: footer.speedup,
    };
    if (job.speakers.length > 0) output.speakers = [...new Set(job.speakers.map(speakerName))];
    const response = await fetch(`/v1/render?format=${format}`, {
      method: "POST",
      headers: withKey({ "Content-Type": "application/json" }),
      body: JSON.stringify({ output }),
    });
    if (!response.ok) throw new Error((await errorFromResponse(response)).message);
    return response.blob();
  }

  for (const [extension, button] of Object.entries(ui.downloads)) {
    button.addEventListener("click", async () => {
      let blob;
      try {
        blob = await rendered(extension);
      } catch (error) {
        showError(`Could not make the ${extension} file: ${error.message}`, "download");
        return;
      }
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `${baseName()}.${extension}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    });
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    // Plain-HTTP deployments are not a secure context: fall back to a selected textarea.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    if (!ok) throw new Error("the browser refused");
  }

  ui.copy.addEventListener("click", async () => {
    try {
      await copyText(toTxt(namedSegments()));
      ui.copy.textContent = "Copied";
      ui.announcer.textContent = "Transcript copied to the clipboard.";
      setTimeout(() => (ui.copy.textContent = "Copy"), 1500);
    } catch (error) {
      showError(`Could not copy to the clipboard: ${error.message}`, "use a download instead");
    }
  });

  setState("idle");
})();
