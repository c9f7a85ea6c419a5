//! Where the relays under comparison keep their queues (`--queue-root`).
//!
//! The filesystem matters as much as the code (issue 19): a VPS's root ext4
//! has a journal, this machine's has none, and file creation and fsync cost
//! differ a lot between the two. So the comparison can put all the queues
//! on a journaled ext4 that the bench makes itself, the same for every run
//! and every machine: a sparse image file, `mkfs.ext4` (journal on by
//! default), loop-mounted (root only), unmounted and removed afterwards.
//! Without it the queues go in the work directory, on whatever filesystem
//! that is (here the root filesystem).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The `--queue-root` value that asks for the journaled image.
pub const EXT4_IMAGE: &str = "ext4-image";
/// The image's size: sparse, so only what the queues use is allocated; room
/// for a 5,000-message backlog of 100 KB messages in three queues.
const IMAGE_SIZE: &str = "4G";

/// The queue root of one run; unmounts and removes the image when dropped.
pub struct QueueRoot {
    dir: PathBuf,
    image: Option<PathBuf>,
    /// How the root was made, for the report.
    pub description: String,
}

impl QueueRoot {
    /// `choice` as given to `--queue-root`: absent for a directory in
    /// `work`, [`EXT4_IMAGE`] for a journaled ext4 image made in `work`, or
    /// any other directory to use as it is.
    pub fn prepare(choice: Option<&str>, work: &Path) -> anyhow::Result<QueueRoot> {
        match choice {
            None => {
                let dir = work.join("queues");
                std::fs::create_dir_all(&dir)?;
                Ok(QueueRoot {
                    description: format!("{} ({})", dir.display(), fs_type(&dir)),
                    dir,
                    image: None,
                })
            }
            Some(EXT4_IMAGE) => mount_image(work),
            Some(dir) => {
                let dir = PathBuf::from(dir);
                std::fs::create_dir_all(&dir)?;
                Ok(QueueRoot {
                    description: format!("{} ({})", dir.display(), fs_type(&dir)),
                    dir,
                    image: None,
                })
            }
        }
    }

    /// A fresh directory for one relay's queue.
    pub fn queue_dir(&self, relay: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(relay);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for QueueRoot {
    fn drop(&mut self) {
        let Some(image) = self.image.take() else {
            return;
        };
        let unmounted = Command::new("umount").arg(&self.dir).status();
        if !matches!(unmounted, Ok(status) if status.success()) {
            eprintln!(
                "postern-bench: could not unmount {}; unmount it and remove {} by hand",
                self.dir.display(),
                image.display()
            );
            return;
        }
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_file(&image);
    }
}

/// Makes, formats and mounts the image under `work`.
fn mount_image(work: &Path) -> anyhow::Result<QueueRoot> {
    if !crate::process::running_as_root() {
        bail!("--queue-root {EXT4_IMAGE} mounts a loop device: run as root");
    }
    let image = work.join("queues.ext4");
    let dir = work.join("queues");
    std::fs::create_dir_all(&dir)?;
    run(
        "truncate",
        &["-s", IMAGE_SIZE, &image.display().to_string()],
    )?;
    run("mkfs.ext4", &["-q", "-F", &image.display().to_string()])?;
    run(
        "mount",
        &[
            "-o",
            "loop",
            &image.display().to_string(),
            &dir.display().to_string(),
        ],
    )?;
    Ok(QueueRoot {
        description: format!(
            "{} (ext4 with a journal, loop-mounted from {})",
            dir.display(),
            image.display()
        ),
        dir,
        image: Some(image),
    })
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The filesystem type of `dir`, as `df` says (for the report only).
fn fs_type(dir: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|text| text.lines().nth(1).map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "filesystem unknown".to_string())
}
