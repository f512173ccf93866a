package selfheal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// manifestName is the journal of backed-up files inside a job's state dir.
const manifestName = "manifest.json"

// rootName records the job directory (symlinks resolved) in a job's state
// dir; Revert writes nowhere else.
const rootName = "root"

type backupEntry struct {
	Path    string `json:"path"`             // absolute path of the edited file
	Backup  string `json:"backup,omitempty"` // copy of the original, relative to the job dir
	Existed bool   `json:"existed"`
	Mode    uint32 `json:"mode,omitempty"`
}

// journal keeps the original of every file a job edits, once, so Revert
// restores the tree as it was before the job, however many edits followed.
type journal struct {
	dir     string
	entries []backupEntry
	seen    map[string]bool
}

func openJournal(stateDir, jobID, root string) (*journal, error) {
	dir := filepath.Join(stateDir, jobID)
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o700); err != nil {
		return nil, fmt.Errorf("create backup dir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, rootName), []byte(root), 0o600); err != nil {
		return nil, fmt.Errorf("create backup dir: %w", err)
	}
	j := &journal{dir: dir, seen: map[string]bool{}}
	ents, err := readManifest(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		j.entries = append(j.entries, e)
		j.seen[e.Path] = true
	}
	return j, nil
}

// save records the current content of path before it is changed.
func (j *journal) save(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("backup %s: %w", path, err)
	}
	if j.seen[abs] {
		return nil
	}
	e := backupEntry{Path: abs}
	data, err := os.ReadFile(abs)
	switch {
	case err == nil:
		st, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("backup %s: %w", abs, err)
		}
		e.Existed = true
		e.Mode = uint32(st.Mode().Perm())
		e.Backup = filepath.Join("files", strconv.Itoa(len(j.entries))+"-"+filepath.Base(abs))
		if err := writeFileAtomic(filepath.Join(j.dir, e.Backup), data, 0o600); err != nil {
			return fmt.Errorf("backup %s: %w", abs, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		// Revert deletes files the job created.
	default:
		return fmt.Errorf("backup %s: %w", abs, err)
	}
	j.entries = append(j.entries, e)
	j.seen[abs] = true
	buf, err := json.MarshalIndent(j.entries, "", "  ")
	if err != nil {
		return fmt.Errorf("backup manifest: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(j.dir, manifestName), buf, 0o600); err != nil {
		return fmt.Errorf("backup manifest: %w", err)
	}
	return nil
}

func readManifest(dir string) ([]backupEntry, error) {
	buf, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("read backup manifest: %w", err)
	}
	var ents []backupEntry
	if err := json.Unmarshal(buf, &ents); err != nil {
		return nil, fmt.Errorf("backup manifest %s is corrupt: %w", dir, err)
	}
	return ents, nil
}

// Revert restores every file job jobID edited to its content before the job
// and removes files the job created. It returns the restored paths. Deleted
// build output (bin/, obj/, CMake caches) is not restored: it is regenerated
// by the next build. stateDir is the Options.StateDir the job ran with.
func Revert(ctx context.Context, stateDir, jobID string) ([]string, error) {
	if jobID == "" || filepath.Base(jobID) != jobID {
		return nil, fmt.Errorf("revert: invalid job id %q", jobID)
	}
	dir := filepath.Join(stateDir, jobID)
	ents, err := readManifest(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// The job ran here and edited nothing: there is nothing to undo.
			if _, rerr := os.Stat(filepath.Join(dir, rootName)); rerr == nil {
				return nil, nil
			}
			return nil, fmt.Errorf("revert job %s: no backups (nothing was edited, or wrong state dir): %w", jobID, err)
		}
		return nil, fmt.Errorf("revert job %s: %w", jobID, err)
	}
	// The job's tree may have changed since (a directory swapped for a
	// symlink): every path must still resolve inside the job directory.
	root, rerr := os.ReadFile(filepath.Join(dir, rootName))
	var restored []string
	var errs []error
	for i := len(ents) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return restored, fmt.Errorf("revert job %s: %w", jobID, err)
		}
		e := ents[i]
		if rerr == nil {
			real, err := resolveExisting(e.Path)
			if err != nil || !inside(real, string(root)) {
				errs = append(errs, fmt.Errorf("refused: %s no longer resolves inside the job directory %s", e.Path, root))
				continue
			}
		}
		if !e.Existed {
			if err := os.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", e.Path, err))
				continue
			}
			restored = append(restored, e.Path)
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Backup))
		if err != nil {
			errs = append(errs, fmt.Errorf("read backup of %s: %w", e.Path, err))
			continue
		}
		if err := writeFileAtomic(e.Path, data, fs.FileMode(e.Mode)); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", e.Path, err))
			continue
		}
		restored = append(restored, e.Path)
	}
	if err := errors.Join(errs...); err != nil {
		return restored, fmt.Errorf("revert job %s: %w", jobID, err)
	}
	return restored, nil
}

// writeFileAtomic never leaves a half-written project file behind, which
// would itself be a build failure for the next run.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	if mode == 0 {
		mode = 0o644
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".selfheal-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
