//! Commands run in a running container, streamed both ways.

use super::*;

impl Engine {
    /// Runs `cmd` in a running container, feeding it `stdin` (if any) and streaming its
    /// standard output into `stdout`; fails with the command's exit code and the end of its
    /// standard error. Nothing is held whole in memory.
    pub async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        stdin: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<(), Error> {
        self.exec_as(container, None, cmd, stdin, stdout).await
    }

    /// [`Engine::exec`] as `user` (a name or uid in the container) rather than the image's.
    pub async fn exec_as(
        &self,
        container: &str,
        user: Option<&str>,
        cmd: &[&str],
        stdin: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<(), Error> {
        use bollard::container::LogOutput;
        use bollard::exec::{StartExecOptions, StartExecResults};
        use tokio::io::AsyncWriteExt;
        let config = bollard::models::ExecConfig {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.iter().map(|c| c.to_string()).collect()),
            user: user.map(str::to_string),
            ..Default::default()
        };
        let what = cmd.first().copied().unwrap_or_default();
        let engine_error = |source| Error::Exec {
            command: what.to_string(),
            container: container.to_string(),
            source: Box::new(source),
        };
        let input_error = |source| Error::ExecInput {
            command: what.to_string(),
            source,
        };
        let output_error = |source| Error::ExecOutput {
            command: what.to_string(),
            source,
        };
        let exec = self
            .docker
            .create_exec(container, config)
            .await
            .map_err(engine_error)?;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(1 << 20),
        };
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = self
            .docker
            .start_exec(&exec.id, Some(options))
            .await
            .map_err(engine_error)?
        else {
            return Err(Error::ExecDetached {
                command: what.to_string(),
                container: container.to_string(),
            });
        };
        let feed = async {
            if let Some(stdin) = stdin {
                tokio::io::copy(stdin, &mut input)
                    .await
                    .map_err(input_error)?;
                input.shutdown().await.map_err(input_error)?;
            }
            Ok::<(), Error>(())
        };
        // The end of standard error is kept for the error message (64 KiB at most): a
        // command's fatal error comes last.
        let mut stderr: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
        let drain = async {
            while let Some(item) = output.next().await {
                match item.map_err(engine_error)? {
                    LogOutput::StdOut { message } => {
                        stdout.write_all(&message).await.map_err(output_error)?
                    }
                    LogOutput::StdErr { message } => {
                        stderr.extend(message.iter());
                        let excess = stderr.len().saturating_sub(64 * 1024);
                        stderr.drain(..excess);
                    }
                    _ => {}
                }
            }
            stdout.flush().await.map_err(output_error)
        };
        // Feeding and reading run together. The engine keeps the stream open while input is
        // attached, even after the command exits, so the exit is watched for as well: once the
        // command is gone, its output gets a moment to arrive and feeding stops. Its own exit
        // code and message matter more than the broken pipe that feeding then meets.
        let (fed, drained) = {
            let both = async { tokio::join!(feed, drain) };
            tokio::pin!(both);
            let exited = async {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    match self.docker.inspect_exec(&exec.id).await {
                        Ok(i) if i.running == Some(false) => return,
                        _ => {}
                    }
                }
            };
            tokio::select! {
                done = &mut both => done,
                () = exited => match tokio::time::timeout(std::time::Duration::from_secs(2), &mut both).await {
                    Ok(done) => done,
                    Err(_) => (
                        Err(Error::ExecInputUnread {
                            command: what.to_string(),
                        }),
                        Ok(()),
                    ),
                },
            }
        };
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(engine_error)?;
        match inspect.exit_code {
            Some(0) => fed.and(drained),
            code => Err(Error::ExecFailed {
                command: what.to_string(),
                container: container.to_string(),
                code,
                stderr: String::from_utf8_lossy(&Vec::from(stderr))
                    .trim()
                    .to_string(),
            }),
        }
    }
}
