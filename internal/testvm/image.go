package testvm

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// File is one file of the initramfs.
type File struct {
	Path string      // in the guest, without the leading slash
	Mode fs.FileMode // permission bits
	Data []byte
}

// Initramfs is what BuildInitramfs packs besides busybox.
type Initramfs struct {
	// Init is the /init script (run by busybox sh).
	Init string
	// Modules are module names (efivarfs, 9pnet_virtio…): each is packed
	// with the modules it depends on, under lib/modules/<release>/, and
	// /etc/modules-load lists them in load order.
	Modules []string
	// Files are extra files (a static vigil, configuration).
	Files []File
}

// BuildInitramfs writes an uncompressed newc initramfs to out: busybox as
// /bin/busybox (the script installs its applets), spec's files, modules
// and /init.
func BuildInitramfs(p Parts, spec Initramfs, out string) error {
	bb, err := os.ReadFile(p.Busybox)
	if err != nil {
		return fmt.Errorf("initramfs: read busybox: %w", err)
	}
	files := []File{
		{Path: "bin/busybox", Mode: 0o755, Data: bb},
		{Path: "init", Mode: 0o755, Data: []byte(spec.Init)},
	}
	order, err := moduleOrder(p.ModulesDir, spec.Modules)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	// modules.dep as depmod writes it ("kernel/x.ko: kernel/dep.ko …",
	// paths relative to lib/modules/<release>): the agent finds a loaded
	// module's file through it, as on an installed host.
	relOf := map[string]string{}
	for _, rel := range order {
		relOf[modName(rel)] = rel
	}
	var dep strings.Builder
	for _, rel := range order {
		deps, err := modDepends(filepath.Join(p.ModulesDir, rel))
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		dep.WriteString(rel + ":")
		for _, d := range deps {
			dep.WriteString(" " + relOf[strings.ReplaceAll(d, "-", "_")])
		}
		dep.WriteString("\n")
	}
	files = append(files, File{Path: filepath.Join("lib/modules", p.Release, "modules.dep"), Mode: 0o644, Data: []byte(dep.String())})
	var list strings.Builder
	for _, rel := range order {
		b, err := os.ReadFile(filepath.Join(p.ModulesDir, rel))
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		gp := filepath.Join("lib/modules", p.Release, rel)
		files = append(files, File{Path: gp, Mode: 0o644, Data: b})
		list.WriteString("/" + gp + "\n")
	}
	files = append(files, File{Path: "etc/modules-load", Mode: 0o644, Data: []byte(list.String())})
	files = append(files, spec.Files...)
	var buf bytes.Buffer
	w := cpioWriter{w: &buf, dirs: map[string]bool{}}
	for _, d := range []string{"dev", "proc", "sys", "mnt", "tmp", "run", "etc", "root", "sbin", "usr/bin", "usr/sbin"} {
		w.dir(d)
	}
	for _, f := range files {
		w.file(f.Path, f.Mode, f.Data)
	}
	w.trailer()
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// moduleOrder resolves names to module paths (relative to dir) with their
// dependencies first, from each module's .modinfo "depends=" (the package
// ships no modules.dep).
func moduleOrder(dir string, names []string) ([]string, error) {
	byName := map[string]string{}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n := d.Name(); !d.IsDir() && strings.HasSuffix(n, ".ko") {
			rel, _ := filepath.Rel(dir, p)
			byName[modName(rel)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list modules: %w", err)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		n = strings.ReplaceAll(n, "-", "_")
		switch state[n] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", n)
		case 2:
			return nil
		}
		rel, ok := byName[n]
		if !ok {
			return fmt.Errorf("module %s: not in %s", n, dir)
		}
		state[n] = 1
		deps, err := modDepends(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modName is the module name of a .ko path (dashes as underscores, as
// the kernel and depends= name it).
func modName(rel string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(rel), ".ko"), "-", "_")
}

func modDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s: no .modinfo", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			deps := strings.Split(string(v), ",")
			sort.Strings(deps)
			return deps, nil
		}
	}
	return nil, nil
}

// cpioWriter writes the newc ("070701") format the kernel unpacks.
type cpioWriter struct {
	w    *bytes.Buffer
	ino  int
	dirs map[string]bool
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	c.ino++
	fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.w.WriteString(name)
	c.w.WriteByte(0)
	c.pad()
}

func (c *cpioWriter) pad() {
	for c.w.Len()%4 != 0 {
		c.w.WriteByte(0)
	}
}

func (c *cpioWriter) dir(p string) {
	p = strings.Trim(p, "/")
	if p == "" || p == "." || c.dirs[p] {
		return
	}
	c.dir(filepath.Dir(p))
	c.dirs[p] = true
	c.header(p, 0o040755, 0)
}

func (c *cpioWriter) file(p string, perm fs.FileMode, data []byte) {
	p = strings.Trim(p, "/")
	c.dir(filepath.Dir(p))
	c.header(p, 0o100000|uint32(perm.Perm()), len(data))
	c.w.Write(data)
	c.pad()
}

func (c *cpioWriter) trailer() { c.header("TRAILER!!!", 0, 0) }

// ESP is what BuildDisk puts on the EFI system partition.
type ESP struct {
	// GrubCfg is written as EFI/debian/grub.cfg (where Debian's signed
	// grub looks, its prefix) and EFI/BOOT/grub.cfg.
	GrubCfg string
	// Initrd is the initramfs file, copied as /initrd.img.
	Initrd string
}

// espMiB is the ESP's size: room for shim, grub, MokManager, the kernel
// and an initramfs with a static vigil.
const espMiB = 120

// BuildDisk writes a GPT disk image to out whose one partition (type
// EF00, at 1 MiB) is a FAT32 ESP: shim as EFI/BOOT/BOOTX64.EFI (the
// removable-media path OVMF boots), grubx64.efi and mmx64.efi beside it,
// grub.cfg, /vmlinuz and /initrd.img.
func BuildDisk(ctx context.Context, p Parts, esp ESP, out string) error {
	dir := filepath.Dir(out)
	fat := filepath.Join(dir, "esp.fat")
	cfg := filepath.Join(dir, "grub.cfg")
	if err := os.WriteFile(cfg, []byte(esp.GrubCfg), 0o644); err != nil {
		return err
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(b))
		}
		return nil
	}
	if err := os.WriteFile(fat, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(fat, espMiB<<20); err != nil {
		return err
	}
	steps := [][]string{
		{"mkfs.vfat", "-F", "32", "-n", "ESP", fat},
		{"mmd", "-i", fat, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"},
		{"mcopy", "-i", fat, p.Shim, "::/EFI/BOOT/BOOTX64.EFI"},
		{"mcopy", "-i", fat, p.Grub, "::/EFI/BOOT/grubx64.efi"},
		{"mcopy", "-i", fat, p.MM, "::/EFI/BOOT/mmx64.efi"},
		{"mcopy", "-i", fat, cfg, "::/EFI/BOOT/grub.cfg"},
		{"mcopy", "-i", fat, cfg, "::/EFI/debian/grub.cfg"},
		{"mcopy", "-i", fat, p.Vmlinuz, "::/vmlinuz"},
		{"mcopy", "-i", fat, esp.Initrd, "::/initrd.img"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return fmt.Errorf("build the ESP: %w", err)
		}
	}
	// The disk: 1 MiB of GPT header, the ESP, and room for the backup GPT.
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(out, (espMiB+2)<<20); err != nil {
		return err
	}
	for _, s := range [][]string{
		{"sgdisk", "-n", fmt.Sprintf("1:2048:+%dM", espMiB), "-t", "1:ef00", out},
		{"dd", "if=" + fat, "of=" + out, "bs=1M", "seek=1", "conv=notrunc", "status=none"},
	} {
		if err := run(s[0], s[1:]...); err != nil {
			return fmt.Errorf("build the disk: %w", err)
		}
	}
	return os.Remove(fat)
}
