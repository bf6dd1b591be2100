//! A minimal W3C WebDriver client for chromedriver, driving one headless Chromium that every
//! test of the binary shares, one test at a time.
//!
//! WebDriver is JSON over HTTP: `POST /session` starts the browser, `POST /session/{id}/url`
//! navigates, `POST /session/{id}/execute/async` runs a script whose last argument is the
//! callback that returns its result. That is all these tests need, so the client is a few
//! requests with reqwest rather than a WebDriver crate.
//!
//! Starting Chromium takes about a second, so the tests share one session behind a lock:
//! [`browser`] waits for the lock, empties the HTTP cache and hands out a [`Tab`]. Each test
//! serves its page and its API on fresh loopback ports, so the preflight cache of one test
//! cannot answer another's requests either.
//!
//! The session lives in a static, and statics are never dropped, so the driver cannot be
//! stopped from a `Drop`. Instead it is tied to the test process by a pipe: a small shell
//! starts chromedriver in a process group of its own and waits for the pipe to close, which
//! the kernel does when the test process ends, however it ends (a panic, `exit`, a signal).
//! The shell then kills the whole group, chromedriver and every Chromium process, and removes
//! the temporary profile.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard, OnceCell, oneshot};

const INSTALL_HINT: &str = "the browser suite needs Chromium and ChromeDriver; on Debian or \
     Ubuntu install them with `apt-get install chromium chromium-driver` (or point \
     STOPOVER_CHROMIUM and STOPOVER_CHROMEDRIVER at the binaries)";

/// Flags for a headless Chromium on a machine that reaches only loopback: no sandbox (tests
/// may run as root), no GPU, and none of the background connections to Google's services.
const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Bounds every script, so a fetch that never settles fails the test instead of hanging it.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs chromedriver (`$2...`) in a new session, so that it and the Chromium it starts form one
/// process group, then waits for stdin to reach end of file (the test process has exited),
/// kills that group and removes the temporary folder `$1`.
const LIFELINE: &str = r#"
dir="$1"; shift
setsid "$@" </dev/null &
driver=$!
cat >/dev/null
kill -9 "-$driver" 2>/dev/null
wait "$driver" 2>/dev/null
rm -rf "$dir" 2>/dev/null || { sleep 1; rm -rf "$dir"; }
"#;

/// The page-side fetch: resolves to what the page can see of the response (the headers CORS
/// lets it read, the status, the body) or to the error `fetch()` rejected with.
const FETCH_FUNCTION: &str = r#"
async function stopoverFetch(url, init) {
  try {
    const response = await fetch(url, init);
    const headers = {};
    for (const [name, value] of response.headers) headers[name] = value;
    const body = await response.text();
    return { kind: "response", status: response.status, type: response.type, headers, body };
  } catch (error) {
    return { kind: "error", name: error.name, message: error.message };
  }
}
"#;

/// What `fetch()` gave the page.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fetched {
    /// The response, as far as the page may read it.
    Response(Readable),
    /// `fetch()` rejected, as it does when a CORS check fails.
    Error {
        /// `TypeError` for a CORS failure.
        name: String,
        /// Chromium says `Failed to fetch`, whatever the reason.
        message: String,
    },
}

/// A response the page could read.
#[derive(Debug, Deserialize)]
pub struct Readable {
    /// The status code.
    pub status: u16,
    /// The response type: `cors` for a cross-origin response the page may read.
    #[serde(rename = "type")]
    pub response_type: String,
    /// The headers the page can see (lower-case names): the CORS-safelisted ones and those
    /// listed in `Access-Control-Expose-Headers`.
    pub headers: BTreeMap<String, String>,
    /// The body as text.
    pub body: String,
}

impl Fetched {
    /// The readable response; panics with what the page got instead.
    #[track_caller]
    pub fn readable(self) -> Readable {
        match self {
            Fetched::Response(readable) => readable,
            Fetched::Error { name, message } => {
                panic!(
                    "the page could not read the response: fetch() rejected with {name}: {message}"
                )
            }
        }
    }

    /// Asserts that `fetch()` rejected with the `TypeError` of a failed CORS check.
    #[track_caller]
    pub fn assert_blocked(self) {
        match self {
            Fetched::Error { name, .. } => assert_eq!(name, "TypeError"),
            Fetched::Response(readable) => {
                panic!("the browser let the page read a response it should hide: {readable:?}")
            }
        }
    }
}

/// The browser session shared by the tests of this binary.
struct Session {
    base: String,
    id: String,
    // Never written to: dropping it, or the test process ending, stops the browser.
    _lifeline: ChildStdin,
    _shell: Child,
}

static SESSION: OnceCell<Result<Mutex<Session>, String>> = OnceCell::const_new();

/// Waits for the shared browser, starting it on first use, and empties its HTTP cache. Panics,
/// with how to install them, when Chromium or ChromeDriver is missing.
pub async fn browser() -> Tab {
    let session = match SESSION.get_or_init(start).await {
        Ok(session) => session,
        Err(message) => panic!("{message}"),
    };
    let tab = Tab {
        session: session.lock().await,
        // A client per test: each test has its own runtime, and pooled connections must not
        // outlive the runtime that made them.
        http: http_client(),
    };
    // A port freed by an earlier test may be handed to this one, and the cache is keyed by
    // URL: start empty so that no earlier response can answer this test's requests.
    tab.command(
        reqwest::Method::POST,
        "goog/cdp/execute",
        json!({ "cmd": "Network.clearBrowserCache", "params": {} }),
    )
    .await;
    tab
}

/// The shared browser, held by one test at a time.
pub struct Tab {
    session: MutexGuard<'static, Session>,
    http: reqwest::Client,
}

impl Tab {
    /// Navigates to `url` and waits for the page to load, then deletes the cookies of its
    /// host so that each test starts without those of an earlier one.
    pub async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "url", json!({ "url": url }))
            .await;
        self.command(reqwest::Method::DELETE, "cookie", Value::Null)
            .await;
    }

    /// Runs `script` synchronously in the page and returns its result.
    pub async fn run(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Calls `fetch(url, init)` from the page and reports what the page got.
    pub async fn fetch(&self, url: &str, init: Value) -> Fetched {
        let script = format!(
            "{FETCH_FUNCTION}\nconst done = arguments[arguments.length - 1];\n\
             stopoverFetch(arguments[0], arguments[1]).then(done);"
        );
        self.fetch_with(&script, url, init).await
    }

    /// Calls `fetch(url, init)` from a sandboxed iframe (`sandbox="allow-scripts"`, so its
    /// origin is the opaque `null`) and reports what that frame got.
    pub async fn fetch_from_sandboxed_iframe(&self, url: &str, init: Value) -> Fetched {
        let script = format!(
            r#"{FETCH_FUNCTION}
const [url, init, done] = arguments;
const frame = document.createElement("iframe");
frame.sandbox = "allow-scripts";
window.addEventListener("message", function listener(event) {{
  if (event.source !== frame.contentWindow) return;
  window.removeEventListener("message", listener);
  frame.remove();
  done(event.data);
}});
frame.srcdoc = "<script>" + stopoverFetch.toString() + "\nstopoverFetch(" + JSON.stringify(url) +
  ", " + JSON.stringify(init) + ").then((result) => parent.postMessage(result, '*'));</" +
  "script>";
document.body.appendChild(frame);"#
        );
        self.fetch_with(&script, url, init).await
    }

    async fn fetch_with(&self, script: &str, url: &str, init: Value) -> Fetched {
        let value = self
            .command(
                reqwest::Method::POST,
                "execute/async",
                json!({ "script": script, "args": [url, init] }),
            )
            .await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|err| panic!("unexpected fetch report {value}: {err}"))
    }

    async fn command(&self, method: reqwest::Method, command: &str, body: Value) -> Value {
        let url = format!(
            "{}/session/{}/{command}",
            self.session.base, self.session.id
        );
        send(&self.http, method, &url, body)
            .await
            .unwrap_or_else(|err| panic!("WebDriver {command}: {err}"))
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(SCRIPT_TIMEOUT + Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("a plain HTTP client builds")
}

/// Sends one WebDriver command and returns its `value`, or the WebDriver error as text.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Value,
) -> Result<Value, String> {
    let mut request = http.request(method, url);
    if !body.is_null() {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.map_err(|err| err.to_string())?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|err| err.to_string())?;
    let mut reply: Value = serde_json::from_slice(&bytes).map_err(|err| {
        format!(
            "{status}, not JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    let value = reply["value"].take();
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{status}: {}: {}",
            value["error"], value["message"]
        ))
    }
}

/// Starts chromedriver and a Chromium session, or says what is missing.
async fn start() -> Result<Mutex<Session>, String> {
    let chromium = binary("STOPOVER_CHROMIUM", "chromium")?;
    let chromedriver = binary("STOPOVER_CHROMEDRIVER", "chromedriver")?;

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("stopover-browser-{}-{nanos}", std::process::id()));
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile)
        .map_err(|err| format!("cannot create {}: {err}", profile.display()))?;
    let log_path = dir.join("chromedriver.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|err| format!("cannot create {}: {err}", log_path.display()))?;

    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(LIFELINE)
        .arg("sh")
        .arg(&dir)
        .arg(&chromedriver)
        .arg("--port=0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", chromedriver.display()))?;
    let lifeline = shell.stdin.take().ok_or("no pipe to the driver's shell")?;
    let stdout = shell.stdout.take().ok_or("no pipe from the driver")?;

    // chromedriver chooses a free port itself and prints it; read it, then keep draining its
    // output so that it never blocks on a full pipe.
    let (port_tx, port_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut port_tx = Some(port_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .strip_prefix("ChromeDriver was started successfully on port ")
                .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
            {
                if let Some(tx) = port_tx.take() {
                    let _ = tx.send(port);
                }
            }
        }
    });
    let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
        .await
        .map_err(|_| driver_failure("chromedriver did not report its port", &log_path))?
        .map_err(|_| driver_failure("chromedriver exited", &log_path))?;
    let base = format!("http://127.0.0.1:{port}");

    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let capabilities = json!({
        "capabilities": {
            "alwaysMatch": {
                "goog:chromeOptions": { "binary": chromium, "args": args },
                "timeouts": { "script": SCRIPT_TIMEOUT.as_millis() as u64, "pageLoad": 30_000 },
            }
        }
    });
    let http = http_client();
    let created = send(
        &http,
        reqwest::Method::POST,
        &format!("{base}/session"),
        capabilities,
    )
    .await
    .map_err(|err| driver_failure(&format!("Chromium did not start: {err}"), &log_path))?;
    let id = created["sessionId"]
        .as_str()
        .ok_or_else(|| format!("no sessionId in {created}"))?
        .to_owned();
    Ok(Mutex::new(Session {
        base,
        id,
        _lifeline: lifeline,
        _shell: shell,
    }))
}

fn driver_failure(what: &str, log: &Path) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    format!("{what}; {INSTALL_HINT}\nchromedriver's output:\n{log}")
}

/// The binary named by the environment variable, or found in `PATH`.
fn binary(variable: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{variable}={} is not a file; {INSTALL_HINT}",
                path.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| format!("`{name}` is not in PATH: {INSTALL_HINT}"))
}
