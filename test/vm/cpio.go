package vm

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Archive is an in-memory description of an initramfs: a set of
// directories, regular files, symlinks and device nodes keyed by their
// absolute guest path. It is written as a cpio "newc" archive, the format
// the kernel unpacks into its rootfs. Parent directories are created
// implicitly, so every entry's parents exist when the kernel reaches it.
type Archive struct {
	entries map[string]*archiveEntry
}

type archiveEntry struct {
	mode     uint32 // file type and permission bits (S_IF* | perm)
	data     []byte // file contents or symlink target
	hostPath string // regular file read at write time when data is nil
	rdevMaj  uint32
	rdevMin  uint32
}

// File type bits of cpio's mode field (the same as stat(2)'s).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// NewArchive returns an empty archive that holds only "/".
func NewArchive() *Archive {
	return &Archive{entries: map[string]*archiveEntry{}}
}

func clean(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("initramfs path %q is not absolute", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("initramfs path %q names the root", p)
	}
	return c, nil
}

func (a *Archive) put(p string, e *archiveEntry) error {
	c, err := clean(p)
	if err != nil {
		return err
	}
	for d := path.Dir(c); d != "/"; d = path.Dir(d) {
		if old, ok := a.entries[d]; ok {
			if old.mode&0o170000 != modeDir {
				return fmt.Errorf("initramfs: %s needs directory %s, which is already a file", c, d)
			}
			continue
		}
		a.entries[d] = &archiveEntry{mode: modeDir | 0o755}
	}
	if old, ok := a.entries[c]; ok && old.mode&0o170000 == modeDir && e.mode&0o170000 == modeDir {
		old.mode = e.mode
		return nil
	}
	a.entries[c] = e
	return nil
}

// Dir adds a directory with the given permission bits (0o1777 or
// os.ModeSticky|0o777 for a sticky /tmp).
func (a *Archive) Dir(p string, perm os.FileMode) error {
	return a.put(p, &archiveEntry{mode: modeDir | permBits(perm)})
}

// permBits maps permissions, given either as plain octal (0o1777) or
// with os.Mode* flags, to the stat(2) bits.
func permBits(perm os.FileMode) uint32 {
	bits := uint32(perm) & 0o7777
	if perm&os.ModeSticky != 0 {
		bits |= 0o1000
	}
	if perm&os.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if perm&os.ModeSetuid != 0 {
		bits |= 0o4000
	}
	return bits
}

// Bytes adds a regular file with the given contents.
func (a *Archive) Bytes(p string, data []byte, perm os.FileMode) error {
	if data == nil {
		data = []byte{}
	}
	return a.put(p, &archiveEntry{mode: modeRegular | permBits(perm), data: data})
}

// File adds the host file hostPath (following symlinks) at guest path p,
// keeping its permission bits. The host file is read when the archive is
// written.
func (a *Archive) File(p, hostPath string) error {
	st, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initramfs: %s is not a regular file", hostPath)
	}
	return a.put(p, &archiveEntry{mode: modeRegular | permBits(st.Mode()), hostPath: hostPath})
}

// Symlink adds a symbolic link at p pointing to target.
func (a *Archive) Symlink(p, target string) error {
	return a.put(p, &archiveEntry{mode: modeSymlink | 0o777, data: []byte(target)})
}

// CharDev adds a character device node.
func (a *Archive) CharDev(p string, perm os.FileMode, major, minor uint32) error {
	return a.put(p, &archiveEntry{mode: modeCharDev | permBits(perm), rdevMaj: major, rdevMin: minor})
}

// Has reports whether p is in the archive.
func (a *Archive) Has(p string) bool {
	c, err := clean(p)
	if err != nil {
		return false
	}
	_, ok := a.entries[c]
	return ok
}

// Paths lists the archive's paths in the order they are written.
func (a *Archive) Paths() []string {
	ps := make([]string, 0, len(a.entries))
	for p := range a.entries {
		ps = append(ps, p)
	}
	// A parent is a prefix of its children, so it sorts first.
	sort.Strings(ps)
	return ps
}

// WriteCPIO writes the archive as an uncompressed cpio newc stream.
func (a *Archive) WriteCPIO(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	ino := uint32(1)
	for _, p := range a.Paths() {
		e := a.entries[p]
		data := e.data
		if e.mode&0o170000 == modeRegular && data == nil {
			b, err := os.ReadFile(e.hostPath)
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			data = b
		}
		nlink := uint32(1)
		if e.mode&0o170000 == modeDir {
			nlink = 2
		}
		if err := writeNewc(bw, ino, e.mode, nlink, e.rdevMaj, e.rdevMin, strings.TrimPrefix(p, "/"), data); err != nil {
			return err
		}
		ino++
	}
	if err := writeNewc(bw, 0, 0, 1, 0, 0, "TRAILER!!!", nil); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteGzip writes the archive as a gzip-compressed cpio newc stream.
func (a *Archive) WriteGzip(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := a.WriteCPIO(zw); err != nil {
		return err
	}
	return zw.Close()
}

func pad4(w io.Writer, n int) error {
	if r := n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

// writeNewc writes one newc record: the 110-byte ASCII header, the
// NUL-terminated name padded to 4 bytes, and the data padded to 4 bytes.
func writeNewc(w io.Writer, ino, mode, nlink, rmaj, rmin uint32, name string, data []byte) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr); err != nil {
		return err
	}
	if _, err := io.WriteString(w, name+"\x00"); err != nil {
		return err
	}
	if err := pad4(w, len(hdr)+len(name)+1); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return pad4(w, len(data))
}
