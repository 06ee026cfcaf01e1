package attach

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// UploadFile uploads the file at path (docs/spec/attachments.md §Upload).
// The file must not change size while it uploads.
func UploadFile(ctx context.Context, rl Relay, path string, o *Options) (*Reference, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("attach: %s is not a regular file", path)
	}
	return Upload(ctx, rl, f, st.Size(), o)
}

// DownloadFile downloads the attachment ref names into a new file at path,
// created with mode 0600. It writes a temporary file in the same directory
// and renames it to path only once Download has verified every byte, so
// path never holds unverified or partial content; on error the temporary
// file is removed. It refuses to replace an existing file.
func DownloadFile(ctx context.Context, rl Relay, ref *Reference, path string, o *Options) (err error) {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("attach: %s exists", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".moat-download-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := Download(ctx, rl, ref, tmp, o); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Link fails if path appeared meanwhile, where Rename would replace it.
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	return os.Remove(tmp.Name())
}
