/* Handwritten signature pad for the mobile signing page. Plain ES2017, no modules, no dependencies:
   DingTalk / WeCom in-app browsers on older Android WebViews must run it.

   The pen model matches signing/strokes.py (the server re-renders the image from the raw points, so
   what is drawn here is only a preview): velocity-filtered width, rate-limited width change (the
   tapered 笔锋 look), cubic Bezier smoothing through the recorded points. */
(function () {
  "use strict";

  var MIN_WIDTH = 1.5, MAX_WIDTH = 5.0, VELOCITY_WEIGHT = 0.7, WIDTH_RATE = 0.2, MIN_DIST = 2;
  var MIN_PATH_LENGTH = 60, MIN_BOX_LONG = 40, MIN_BOX_SHORT = 15, MIN_LINE_SPREAD = 3;
  var MAX_POINTS = 20000, MAX_STROKES = 500;

  var form = document.getElementById("sign-form");
  var wrap = document.getElementById("pad-wrap");
  var canvas = document.getElementById("pad");
  var ctx = canvas.getContext("2d");
  var status = document.getElementById("status");
  var consent = document.getElementById("consent");
  var submitBtn = document.getElementById("submit");
  var data = form.dataset;

  var strokes = [];      // each: array of {x, y, t, p} in CSS px of the current canvas size
  var widths = [];       // per stroke, per point line width (derived, never sent)
  var cur = null;        // stroke being drawn
  var curDrawn = 0;      // segments of `cur` already painted
  var cssW = 0, cssH = 0;
  var t0 = (window.performance && performance.now) ? performance.now() : Date.now();
  var done = false;
  var activePointer = null;

  function now() {
    var t = (window.performance && performance.now) ? performance.now() : Date.now();
    return Math.max(0, t - t0);
  }

  function round(v, k) { var m = Math.pow(10, k); return Math.round(v * m) / m; }
  function dist(a, b) { return Math.sqrt((a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y)); }

  // ---------------------------------------------------------------- pen model (same as strokes.py)
  function nextWidth(stroke, ws, i) {
    if (i === 0) { stroke._v = 0; return (MIN_WIDTH + MAX_WIDTH) / 2; }
    var a = stroke[i - 1], b = stroke[i];
    var dt = Math.max(b.t - a.t, 1);
    stroke._v = VELOCITY_WEIGHT * (dist(a, b) / dt) + (1 - VELOCITY_WEIGHT) * stroke._v;
    var target = Math.max(MAX_WIDTH / (stroke._v + 1), MIN_WIDTH);
    var prev = ws[i - 1];
    return Math.min(Math.max(target, prev * (1 - WIDTH_RATE)), prev * (1 + WIDTH_RATE));
  }

  function controls(p0, p1, p2) {
    var m1 = { x: (p0.x + p1.x) / 2, y: (p0.y + p1.y) / 2 };
    var m2 = { x: (p1.x + p2.x) / 2, y: (p1.y + p2.y) / 2 };
    var l1 = dist(p0, p1), l2 = dist(p1, p2);
    var k = (l1 + l2) > 0 ? l2 / (l1 + l2) : 0.5;
    var cm = { x: m2.x + (m1.x - m2.x) * k, y: m2.y + (m1.y - m2.y) * k };
    var tx = p1.x - cm.x, ty = p1.y - cm.y;
    return [{ x: m1.x + tx, y: m1.y + ty }, { x: m2.x + tx, y: m2.y + ty }];
  }

  function dot(x, y, w) {
    ctx.moveTo(x + w / 2, y);
    ctx.arc(x, y, w / 2, 0, 2 * Math.PI, false);
  }

  // Paint segment i (point i -> i+1) of a stroke; needs point i+2 (or the stroke end) for the tangent.
  function paintSegment(stroke, ws, i) {
    var a = stroke[i], b = stroke[i + 1];
    var before = i > 0 ? stroke[i - 1] : a;
    var after = i + 2 < stroke.length ? stroke[i + 2] : b;
    var c1 = controls(before, a, b)[1];
    var c2 = controls(a, b, after)[0];
    var n = Math.max(1, Math.ceil(dist(a, b)));
    ctx.beginPath();
    if (i === 0) { dot(a.x, a.y, ws[0]); }
    for (var k = 1; k <= n; k++) {
      var t = k / n, u = 1 - t;
      var x = u * u * u * a.x + 3 * u * u * t * c1.x + 3 * u * t * t * c2.x + t * t * t * b.x;
      var y = u * u * u * a.y + 3 * u * u * t * c1.y + 3 * u * t * t * c2.y + t * t * t * b.y;
      dot(x, y, ws[i] + (ws[i + 1] - ws[i]) * t);
    }
    ctx.fill();
  }

  function paintStroke(stroke, ws) {
    if (stroke.length === 1) {
      ctx.beginPath(); dot(stroke[0].x, stroke[0].y, ws[0]); ctx.fill();
      return;
    }
    for (var i = 0; i + 1 < stroke.length; i++) { paintSegment(stroke, ws, i); }
  }

  function recomputeWidths(stroke) {
    var ws = [];
    for (var i = 0; i < stroke.length; i++) { ws.push(nextWidth(stroke, ws, i)); }
    return ws;
  }

  function redraw() {
    ctx.clearRect(0, 0, cssW, cssH);
    ctx.fillStyle = "#111";
    for (var i = 0; i < strokes.length; i++) { paintStroke(strokes[i], widths[i]); }
    wrap.className = strokes.length ? "pad-wrap inked" : "pad-wrap";
  }

  // ---------------------------------------------------------------- sizing (DPR, rotation, resize)
  function resize() {
    // The canvas fills the wrapper's padding box; the wrapper's own rect would include its border.
    var rect = canvas.getBoundingClientRect();
    var w = rect.width, h = rect.height;
    if (w < 1 || h < 1) { return; }
    if (strokes.length && (w !== cssW || h !== cssH)) {
      // Keep coordinates as they are while the mark still fits (so rotating back and forth is lossless);
      // shrink uniformly, keeping its shape, only when the new canvas is too small for it.
      var maxX = 1, maxY = 1, i, j;
      for (i = 0; i < strokes.length; i++) {
        for (j = 0; j < strokes[i].length; j++) {
          maxX = Math.max(maxX, strokes[i][j].x); maxY = Math.max(maxY, strokes[i][j].y);
        }
      }
      var s = Math.min(1, Math.floor(w) / maxX, Math.floor(h) / maxY);
      if (s < 1) {
        for (i = 0; i < strokes.length; i++) {
          for (j = 0; j < strokes[i].length; j++) {
            strokes[i][j].x = Math.floor(strokes[i][j].x * s * 100) / 100;
            strokes[i][j].y = Math.floor(strokes[i][j].y * s * 100) / 100;
          }
          widths[i] = recomputeWidths(strokes[i]);
        }
      }
    }
    cssW = w; cssH = h;
    var dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    // setTransform, not scale: repeated resizes must not compound the DPR factor.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    redraw();
  }

  // ---------------------------------------------------------------- input
  function pointFrom(clientX, clientY, pressure) {
    var rect = canvas.getBoundingClientRect();
    var x = Math.min(Math.max(clientX - rect.left, 0), Math.floor(cssW));
    var y = Math.min(Math.max(clientY - rect.top, 0), Math.floor(cssH));
    var p = (typeof pressure === "number" && pressure > 0 && pressure <= 1) ? pressure : 0.5;
    return { x: round(x, 2), y: round(y, 2), t: round(now(), 1), p: round(p, 3) };
  }

  function totalPoints() {
    var n = 0;
    for (var i = 0; i < strokes.length; i++) { n += strokes[i].length; }
    return n;
  }

  function begin(pt) {
    if (done || strokes.length >= MAX_STROKES || totalPoints() >= MAX_POINTS) { return false; }
    cur = [pt];
    strokes.push(cur);
    widths.push([nextWidth(cur, [], 0)]);
    curDrawn = 0;
    wrap.className = "pad-wrap inked";
    setStatus("", "");
    return true;
  }

  function extend(pt) {
    if (!cur) { return; }
    var last = cur[cur.length - 1];
    if (dist(last, pt) < MIN_DIST || totalPoints() >= MAX_POINTS) { return; }
    if (pt.t < last.t) { pt.t = last.t; }
    cur.push(pt);
    var ws = widths[widths.length - 1];
    ws.push(nextWidth(cur, ws, cur.length - 1));
    ctx.fillStyle = "#111";
    while (curDrawn + 2 < cur.length) { paintSegment(cur, ws, curDrawn); curDrawn++; }
  }

  function end() {
    if (!cur) { return; }
    var ws = widths[widths.length - 1];
    ctx.fillStyle = "#111";
    if (cur.length === 1) { paintStroke(cur, ws); }
    while (curDrawn + 1 < cur.length) { paintSegment(cur, ws, curDrawn); curDrawn++; }
    cur = null;
  }

  var isIOS = /iP(hone|ad|od)/.test(navigator.userAgent) ||
    (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
  var opts = { passive: false };

  if (window.PointerEvent && !isIOS) {
    canvas.addEventListener("pointerdown", function (e) {
      if (!e.isPrimary || activePointer !== null) { return; }
      e.preventDefault();
      if (!begin(pointFrom(e.clientX, e.clientY, e.pressure))) { return; }
      activePointer = e.pointerId;
      if (canvas.setPointerCapture) { try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* ok */ } }
    }, opts);
    window.addEventListener("pointermove", function (e) {
      if (e.pointerId !== activePointer) { return; }
      e.preventDefault();
      var list = (e.getCoalescedEvents && e.getCoalescedEvents()) || [];
      if (!list.length) { list = [e]; }
      for (var i = 0; i < list.length; i++) { extend(pointFrom(list[i].clientX, list[i].clientY, list[i].pressure)); }
    }, opts);
    var up = function (e) {
      if (e.pointerId !== activePointer) { return; }
      e.preventDefault();
      activePointer = null;
      end();
    };
    window.addEventListener("pointerup", up, opts);
    window.addEventListener("pointercancel", up, opts);
  } else {
    // iOS: Scribble swallows pointer events from the finger, so use touch events (and mouse elsewhere).
    var touchId = null;
    canvas.addEventListener("touchstart", function (e) {
      if (touchId !== null) { e.preventDefault(); return; }
      var tch = e.changedTouches[0];
      e.preventDefault();
      if (begin(pointFrom(tch.clientX, tch.clientY, tch.force))) { touchId = tch.identifier; }
    }, opts);
    window.addEventListener("touchmove", function (e) {
      if (touchId === null) { return; }
      e.preventDefault();
      for (var i = 0; i < e.changedTouches.length; i++) {
        var tch = e.changedTouches[i];
        if (tch.identifier === touchId) { extend(pointFrom(tch.clientX, tch.clientY, tch.force)); }
      }
    }, opts);
    var tend = function (e) {
      for (var i = 0; i < e.changedTouches.length; i++) {
        if (e.changedTouches[i].identifier === touchId) { touchId = null; end(); }
      }
    };
    window.addEventListener("touchend", tend, opts);
    window.addEventListener("touchcancel", tend, opts);
    var mouseDown = false;
    canvas.addEventListener("mousedown", function (e) {
      e.preventDefault();
      mouseDown = begin(pointFrom(e.clientX, e.clientY));
    });
    window.addEventListener("mousemove", function (e) { if (mouseDown) { extend(pointFrom(e.clientX, e.clientY)); } });
    window.addEventListener("mouseup", function () { if (mouseDown) { mouseDown = false; end(); } });
  }

  // ---------------------------------------------------------------- triviality (same as strokes.py)
  function trivialReason() {
    var pts = [], length = 0, i, j;
    for (i = 0; i < strokes.length; i++) {
      for (j = 0; j < strokes[i].length; j++) {
        pts.push(strokes[i][j]);
        if (j > 0) { length += dist(strokes[i][j - 1], strokes[i][j]); }
      }
    }
    if (!pts.length) { return "empty"; }
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity, mx = 0, my = 0;
    for (i = 0; i < pts.length; i++) {
      minX = Math.min(minX, pts[i].x); maxX = Math.max(maxX, pts[i].x);
      minY = Math.min(minY, pts[i].y); maxY = Math.max(maxY, pts[i].y);
      mx += pts[i].x; my += pts[i].y;
    }
    var bw = maxX - minX, bh = maxY - minY;
    if (length < MIN_PATH_LENGTH || Math.max(bw, bh) < MIN_BOX_LONG) { return "too small"; }
    mx /= pts.length; my /= pts.length;
    var sxx = 0, syy = 0, sxy = 0;
    for (i = 0; i < pts.length; i++) {
      var dx = pts[i].x - mx, dy = pts[i].y - my;
      sxx += dx * dx; syy += dy * dy; sxy += dx * dy;
    }
    sxx /= pts.length; syy /= pts.length; sxy /= pts.length;
    var half = (sxx + syy) / 2;
    var disc = Math.sqrt(Math.max(half * half - (sxx * syy - sxy * sxy), 0));
    var spread = Math.sqrt(Math.max(half - disc, 0));
    if (Math.min(bw, bh) < MIN_BOX_SHORT || spread < MIN_LINE_SPREAD) { return "straight line"; }
    return null;
  }

  // ---------------------------------------------------------------- buttons and submit
  function setStatus(text, kind) {
    status.textContent = text;
    status.className = kind ? "status " + kind : "status";
  }

  document.getElementById("undo").addEventListener("click", function () {
    if (done || cur) { return; }
    strokes.pop(); widths.pop();
    redraw();
  });
  document.getElementById("clear").addEventListener("click", function () {
    if (done || cur) { return; }
    strokes = []; widths = [];
    redraw();
  });

  function payload() {
    var out = [];
    for (var i = 0; i < strokes.length; i++) {
      var s = [];
      for (var j = 0; j < strokes[i].length; j++) {
        var p = strokes[i][j];
        s.push({ x: p.x, y: p.y, t: p.t, p: p.p });
      }
      out.push(s);
    }
    return { width: Math.max(1, Math.floor(cssW)), height: Math.max(1, Math.floor(cssH)), strokes: out };
  }

  // The sealed PDF is the signer's own copy; while the seal is still being made the route answers
  // "try again shortly", so the link is offered either way.
  function showDownload(text) {
    var href = null;
    try { href = JSON.parse(text).download; } catch (err) { href = null; }
    var wrap = document.getElementById("download-wrap");
    if (!href || !wrap) { return; }
    document.getElementById("download").setAttribute("href", href);
    wrap.hidden = false;
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (done) { return; }
    if (!consent.checked) { setStatus(data.msgConsent, "error"); return; }
    var reason = trivialReason();
    if (reason === "empty") { setStatus(data.msgEmpty, "error"); return; }
    if (reason) { setStatus(data.msgTrivial, "error"); return; }
    submitBtn.disabled = true;
    setStatus(data.msgSending, "");
    var body = JSON.stringify({
      token: data.token, consent: true, consent_version: data.consentVersion, strokes: payload()
    });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", data.submitUrl, true);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4) { return; }
      var msg = null;
      try { msg = JSON.parse(xhr.responseText).message; } catch (err) { msg = null; }
      if (xhr.status >= 200 && xhr.status < 300) {
        done = true;
        setStatus(msg || data.msgDone, "ok");
        consent.disabled = true;
        showDownload(xhr.responseText);
      } else {
        submitBtn.disabled = false;
        setStatus(msg || data.msgFailed, "error");
      }
    };
    xhr.send(body);
  });

  if (window.ResizeObserver) {
    // Observe the wrapper, not window resize: the mobile URL bar showing/hiding fires window resizes.
    new ResizeObserver(function () { resize(); }).observe(wrap);
  } else {
    window.addEventListener("resize", resize);
    window.addEventListener("orientationchange", function () { setTimeout(resize, 200); });
  }
  resize();

  // Exposed for diagnostics and tests; the page itself never reads it.
  window.signpad = { strokes: function () { return strokes; }, trivialReason: trivialReason, payload: payload };
})();
