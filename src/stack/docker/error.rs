//! What went wrong talking to the Docker engine, with the object concerned.

/// The engine's own words for a failed call: the message it answered with, else bollard's.
pub(super) fn short(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// How `exec` reports a command's exit code.
fn exit_code(code: &Option<i64>) -> String {
    code.map_or("unknown".to_string(), |c| c.to_string())
}

/// What went wrong talking to the Docker engine. The messages are the engine's own where it
/// gave one ([`short`]), with the object concerned in front where plantd always said it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Docker socket's path is not UTF-8")]
    SocketNotUtf8,
    #[error("DOCKER_HOST={host} is not a unix socket; plantd talks to the local engine only")]
    NotUnixSocket { host: String },
    /// A call the engine failed; the message is the engine's alone.
    #[error("{}", short(.source))]
    Call {
        /// What was asked ("connect", "list containers", "start", ...).
        call: &'static str,
        /// The container, image, volume or stack it was asked about.
        target: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("a network named {network} exists that plantd did not create; remove it or set stack.network")]
    ForeignNetwork { network: String },
    #[error("{action} network {network}: {}", short(.source))]
    Network {
        action: &'static str,
        network: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("a volume named {volume} exists that plantd did not create; plantd will not write into it (rename it, or point stack.*.volumes at it explicitly as a bind mount)")]
    ForeignVolume { volume: String },
    #[error("{action} volume {volume}: {}", short(.source))]
    Volume {
        action: &'static str,
        volume: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("a container named {name} exists that is not this stack's; plantd leaves it alone (rename it, or set stack.name)")]
    ContainerNameTaken { name: String },
    #[error("creating {name}: {}", short(.source))]
    CreateContainer {
        name: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("did not finish within {limit_s} s")]
    RunTimedOut { container: String, limit_s: u64 },
    #[error("the engine ended the wait without a status")]
    WaitEnded { container: String },
    #[error("exited with {code}; its last lines:\n{tail}")]
    RunFailed {
        container: String,
        code: i64,
        tail: String,
    },
    #[error("the engine did not send the logs in time")]
    LogsTimedOut { container: String },
    #[error("removing {container}: {source}")]
    RemoveContainer {
        container: String,
        #[source]
        source: Box<Error>,
    },
    #[error("{container}: {}", short(.source))]
    InspectContainer {
        container: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("{container} has no address on {network}; is it running?")]
    NoAddress { container: String, network: String },
    #[error("inspecting {image}: {}", short(.source))]
    InspectImage {
        image: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("reading {image}'s users: {}", short(.source))]
    ReadImageUsers {
        image: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("{image} runs as user {user:?}, which its /etc/passwd does not name")]
    UnknownImageUser { image: String, user: String },
    #[error("reading {path}: {}", short(.source))]
    Download {
        path: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("{path} is over 1 MiB")]
    FileTooLarge { path: String },
    #[error("reading {path}: {source}")]
    Archive {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the engine sent an empty archive")]
    EmptyArchive { path: String },
    #[error("pulling {image}: {}", short(.source))]
    Pull {
        image: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("pulling {image}: not done within {minutes} minutes")]
    PullTimedOut { image: String, minutes: u64 },
    #[error("image {image} is not on this machine; build it with images/build-local.sh or load a bundle with `plantd images load`")]
    ImageMissing { image: String },
    #[error("{command} in {container}: {}", short(.source))]
    Exec {
        command: String,
        container: String,
        #[source]
        source: Box<bollard::errors::Error>,
    },
    #[error("{command} in {container}: the engine detached")]
    ExecDetached { command: String, container: String },
    #[error("feeding {command}: {source}")]
    ExecInput {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing what {command} printed: {source}")]
    ExecOutput {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} exited before reading all of its input")]
    ExecInputUnread { command: String },
    #[error("{command} in {container} failed (exit {}): {stderr}", exit_code(.code))]
    ExecFailed {
        command: String,
        container: String,
        code: Option<i64>,
        /// The end of its standard error, trimmed.
        stderr: String,
    },
}

/// A failed call of the engine's, with what was asked and of what (copied only on failure).
pub(super) fn call<'a>(
    call: &'static str,
    target: &'a str,
) -> impl FnOnce(bollard::errors::Error) -> Error + 'a {
    move |source| Error::Call {
        call,
        target: target.to_string(),
        source: Box::new(source),
    }
}
