// soundalike upload page: drag-and-drop, upload progress (XMLHttpRequest upload events), then the results page.
// Without JavaScript the form still works: a plain POST answered by a redirect.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  var input = document.getElementById("file");
  var zone = document.getElementById("dropzone");
  var nameBox = document.getElementById("file-name");
  var progress = document.getElementById("progress");
  var fill = document.getElementById("progress-fill");
  var text = document.getElementById("progress-text");
  var errorBox = document.getElementById("upload-error");
  var button = document.getElementById("submit");
  var maxBytes = parseInt(form.dataset.maxBytes || "0", 10);
  var chosen = null;
  input.required = false; // a dropped file is not in the input; the script checks for a file itself

  function megabytes(n) { return (n / 1048576).toFixed(1) + " MB"; }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    progress.hidden = true;
    progress.classList.remove("analysing");
    button.disabled = false;
  }

  function choose(file) {
    chosen = file || null;
    errorBox.hidden = true;
    nameBox.textContent = chosen ? chosen.name + " · " + megabytes(chosen.size) : "";
    if (chosen && maxBytes && chosen.size > maxBytes) {
      showError(chosen.name + " is " + megabytes(chosen.size) + ", more than the " + form.dataset.maxMb + " MB limit.");
    }
  }

  input.addEventListener("change", function () { choose(input.files[0]); });

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "dragend", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      try { input.files = files; } catch (e) { /* older browsers: keep the file in `chosen` only */ }
      choose(files[0]);
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!chosen) { showError("Choose or drop an audio file first."); return; }
    if (maxBytes && chosen.size > maxBytes) {
      showError(chosen.name + " is " + megabytes(chosen.size) + ", more than the " + form.dataset.maxMb + " MB limit.");
      return;
    }
    var data = new FormData();
    data.append("file", chosen, chosen.name);
    data.append("aspect", document.getElementById("aspect").value);
    data.append("k", document.getElementById("k").value);
    var csrf = form.querySelector("input[name=csrf_token]");
    if (csrf) data.append("csrf_token", csrf.value); // a server with a password wants the session's token

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    errorBox.hidden = true;
    progress.hidden = false;
    progress.classList.remove("analysing");
    fill.style.width = "0%";
    text.textContent = "Uploading…";
    button.disabled = true;

    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var pct = Math.round((100 * e.loaded) / e.total);
      fill.style.width = pct + "%";
      text.textContent = "Uploading… " + pct + "% of " + megabytes(e.total);
    });
    xhr.upload.addEventListener("load", function () {
      progress.classList.add("analysing");
      text.textContent = "Listening to it and searching the library…";
    });
    xhr.addEventListener("load", function () {
      var body = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300 && body.results_url) {
        text.textContent = "Done in " + body.seconds + " s; opening the results…";
        window.location.assign(body.results_url);
      } else {
        showError(body.error || ("The upload failed (HTTP " + xhr.status + ")."));
      }
    });
    xhr.addEventListener("error", function () { showError("The connection to the server failed."); });
    xhr.send(data);
  });
})();
