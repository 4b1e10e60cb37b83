//! Images on the engine: present, pulled, and the user an image runs as.

use super::*;

impl Engine {
    /// Whether the image is present on the engine.
    pub async fn has_image(&self, image: &str) -> Result<bool, Error> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(call("inspect image", image)(e)),
        }
    }

    /// The ID (`sha256:…`) of the image `image` names, if Docker has it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, Error> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(call("inspect image", image)(e)),
        }
    }

    /// The uid and gid the image's processes run as (its `USER`), `None` for root. A user
    /// named rather than numbered is looked up in the image's own `/etc/passwd` and
    /// `/etc/group`, read from a container made for that (never started, no network) and
    /// removed again; it carries `stack`'s label (and no service's, so the supervisor never
    /// counts it), so that one a crash left behind is recognisably the stack's.
    pub async fn image_user(&self, stack: &str, image: &str) -> Result<Option<(u32, u32)>, Error> {
        let user = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|source| Error::InspectImage {
                image: image.to_string(),
                source: Box::new(source),
            })?
            .config
            .and_then(|c| c.user)
            .unwrap_or_default();
        if let Some(ids) = numeric_user(&user) {
            return Ok(ids.filter(|&(uid, _)| uid != 0));
        }
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["true".into()]),
            network_disabled: Some(true),
            labels: Some(Self::labels(stack)),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(|source| Error::ReadImageUsers {
                image: image.to_string(),
                source: Box::new(source),
            })?
            .id;
        let read = async {
            let passwd = self.read_file(&id, "/etc/passwd").await?;
            let group = self.read_file(&id, "/etc/group").await.unwrap_or_default();
            named_user(&user, &passwd, &group).ok_or_else(|| Error::UnknownImageUser {
                image: image.to_string(),
                user: user.clone(),
            })
        }
        .await;
        let _ = self.remove(&id, false).await;
        read.map(|(uid, gid)| (uid != 0).then_some((uid, gid)))
    }

    /// One small text file from a container's filesystem (at most 1 MiB).
    pub(super) async fn read_file(&self, id: &str, path: &str) -> Result<String, Error> {
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar.extend_from_slice(&chunk.map_err(|source| Error::Download {
                path: path.to_string(),
                source: Box::new(source),
            })?);
            if tar.len() > 1 << 20 {
                return Err(Error::FileTooLarge {
                    path: path.to_string(),
                });
            }
        }
        let mut archive = tar::Archive::new(tar.as_slice());
        let archive_error = |source| Error::Archive {
            path: path.to_string(),
            source,
        };
        let mut entries = archive.entries().map_err(archive_error)?;
        let mut entry = entries
            .next()
            .ok_or_else(|| Error::EmptyArchive {
                path: path.to_string(),
            })?
            .map_err(archive_error)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).map_err(archive_error)?;
        Ok(text)
    }

    /// Pulls an image from the engine's registry.
    pub async fn pull(&self, image: &str) -> Result<(), Error> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        let pull = async {
            while let Some(item) = stream.next().await {
                item.map_err(|source| Error::Pull {
                    image: image.to_string(),
                    source: Box::new(source),
                })?;
            }
            Ok(())
        };
        tokio::time::timeout(PULL_TIMEOUT, pull)
            .await
            .unwrap_or_else(|_| {
                Err(Error::PullTimedOut {
                    image: image.to_string(),
                    minutes: PULL_TIMEOUT.as_secs() / 60,
                })
            })
    }

    /// Makes sure the image is present: a present image is never pulled again; a missing one
    /// is pulled only when the spec allows it.
    pub async fn ensure_image(&self, spec: &ServiceSpec) -> Result<(), Error> {
        if self.has_image(&spec.image).await? {
            return Ok(());
        }
        if !spec.pullable {
            return Err(Error::ImageMissing {
                image: spec.image.clone(),
            });
        }
        self.pull(&spec.image).await
    }
}
