//! One error type for the fs layer and the one table that maps it to errno.

use crate::backend::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("file name too long")]
    NameTooLong,
    #[error("invalid file name")]
    InvalidName,
    #[error("invalid argument")]
    InvalidArgument,
    #[error("read-only mount")]
    ReadOnly,
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("file is busy: {0}")]
    Busy(&'static str),
    /// The kernel reads this file from the data cache (passthrough) for handles still
    /// open, and it requires every open of the inode to do the same: an open for writing,
    /// or of another version, must wait until they close (ETXTBSY, as for a running
    /// program's file).
    #[error("file is open for passthrough reading")]
    TextBusy,
    #[error("stale file handle (object changed while open)")]
    Stale,
    #[error("bad file handle")]
    BadHandle,
    #[error("upload failed: {0}")]
    UploadFailed(BackendError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// The errno a program sees.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::InvalidName => libc::EINVAL,
            FsError::InvalidArgument => libc::EINVAL,
            FsError::ReadOnly => libc::EROFS,
            FsError::Unsupported(_) => libc::ENOTSUP,
            FsError::Busy(_) => libc::EBUSY,
            FsError::TextBusy => libc::ETXTBSY,
            FsError::Stale => libc::ESTALE,
            FsError::BadHandle => libc::EBADF,
            // A file past the store's size limit says so; other upload failures are EIO.
            FsError::UploadFailed(BackendError::TooLarge(_)) => libc::EFBIG,
            FsError::UploadFailed(_) => libc::EIO,
            FsError::Backend(b) => backend_errno(b),
        }
    }
}

fn backend_errno(e: &BackendError) -> i32 {
    match e {
        BackendError::NotFound => libc::ENOENT,
        BackendError::PreconditionFailed => libc::ESTALE,
        BackendError::AccessDenied(_) => libc::EACCES,
        BackendError::InvalidInput(_) => libc::EINVAL,
        BackendError::Unsupported(_) => libc::ENOTSUP,
        BackendError::NoSpace => libc::ENOSPC,
        BackendError::TooLarge(_) => libc::EFBIG,
        BackendError::NoSuchBucket(_)
        | BackendError::Throttled(_)
        | BackendError::Transient(_)
        | BackendError::Other(_) => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_errno() {
        let b = |e: BackendError| FsError::Backend(e).errno();
        let table = [
            (FsError::NotFound.errno(), libc::ENOENT),
            (FsError::Exists.errno(), libc::EEXIST),
            (FsError::NotDir.errno(), libc::ENOTDIR),
            (FsError::IsDir.errno(), libc::EISDIR),
            (FsError::NotEmpty.errno(), libc::ENOTEMPTY),
            (FsError::NameTooLong.errno(), libc::ENAMETOOLONG),
            (FsError::InvalidName.errno(), libc::EINVAL),
            (FsError::InvalidArgument.errno(), libc::EINVAL),
            (FsError::ReadOnly.errno(), libc::EROFS),
            (FsError::Unsupported("x").errno(), libc::ENOTSUP),
            (FsError::Busy("x").errno(), libc::EBUSY),
            (FsError::TextBusy.errno(), libc::ETXTBSY),
            (FsError::Stale.errno(), libc::ESTALE),
            (FsError::BadHandle.errno(), libc::EBADF),
            (FsError::UploadFailed(BackendError::Transient("t".into())).errno(), libc::EIO),
            (b(BackendError::NotFound), libc::ENOENT),
            (b(BackendError::PreconditionFailed), libc::ESTALE),
            (b(BackendError::AccessDenied("d".into())), libc::EACCES),
            (b(BackendError::InvalidInput("i".into())), libc::EINVAL),
            (b(BackendError::Unsupported("u".into())), libc::ENOTSUP),
            (b(BackendError::TooLarge("t".into())), libc::EFBIG),
            (FsError::UploadFailed(BackendError::TooLarge("t".into())).errno(), libc::EFBIG),
            (b(BackendError::NoSuchBucket("b".into())), libc::EIO),
            (b(BackendError::Throttled("t".into())), libc::EIO),
            (b(BackendError::Transient("t".into())), libc::EIO),
            (b(BackendError::Other("o".into())), libc::EIO),
            (b(BackendError::NoSpace), libc::ENOSPC),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }
}
