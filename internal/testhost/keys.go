package testhost

import (
	"crypto/x509"
	"fmt"
	"io/fs"
	"strings"

	"github.com/vigil-attest/vigil/hostfs"
	"github.com/vigil-attest/vigil/kernelkeys"
)

// Key is one key of the running kernel, as /proc/keys shows it
// (security/keys/proc.c proc_keys_show).
type Key struct {
	Serial uint32
	// Flags are the seven flag letters; "" is "I------" (instantiated).
	Flags string
	Perm  uint32
	UID   int
	GID   int
	// Type is the key type's full name ("keyring", "asymmetric",
	// "blacklist", "user"); /proc/keys cuts it to 9 characters.
	Type     string
	Describe string
	// In is the keyring (its describe name, ".blacklist") whose members
	// include this key, "" for none.
	In string
}

// procKeys prints keys as /proc/keys does.
func procKeys(keys []Key) []byte {
	var b strings.Builder
	for _, k := range keys {
		flags := k.Flags
		if flags == "" {
			flags = "I------"
		}
		fmt.Fprintf(&b, "%08x %s %5d %4s %08x %5d %5d %-9.9s %s\n", k.Serial, flags, 1, "perm", k.Perm, k.UID, k.GID, k.Type, k.Describe)
	}
	return []byte(b.String())
}

// AsymmetricKey is the key the kernel loads from c into keyring in (its
// describe: the key description, subtype, the key id's last 8 digits).
func AsymmetricKey(serial uint32, in string, c *x509.Certificate) Key {
	d := kernelkeys.KeyDescription(c)
	id := d[strings.LastIndex(d, ": ")+2:]
	if len(id) > 8 {
		id = id[len(id)-8:]
	}
	return Key{Serial: serial, Perm: 0x1f030000, Type: "asymmetric", Describe: fmt.Sprintf("%s: X509.rsa %s []", d, id), In: in}
}

// BlacklistKey is a .blacklist hash entry ("bin:<hex>", "tbs:<hex>").
func BlacklistKey(serial uint32, hash string) Key {
	return Key{Serial: serial, Perm: 0x0f010000, Type: "blacklist", Describe: hash, In: kernelkeys.KeyringBlacklist}
}

// DebianKeyrings are the keyrings of a Debian 12 guest booted by shim
// with MokListTrustedRT set, as the real guest showed them: the build
// key in .builtin_trusted_keys, the firmware's db in .platform, MokListRT
// in .machine (linked into .secondary_trusted_keys), and .blacklist
// holding the dbx and MokListXRT hashes the kernel loaded plus extra
// (its own keys follow them). Serials are the guest's form, not its values.
func DebianKeyrings(build *x509.Certificate, machine []*x509.Certificate, platform []*x509.Certificate, extra ...Key) []Key {
	keys := []Key{
		{Serial: 0x0b2e1033, Perm: 0x0f0b0000, Type: "keyring", Describe: fmt.Sprintf(".blacklist: %d", countIn(extra, kernelkeys.KeyringBlacklist))},
		{Serial: 0x0c2d8163, Perm: 0x1f0b0000, Type: "keyring", Describe: ".builtin_trusted_keys: 1"},
		{Serial: 0x1d0a33e1, Perm: 0x1f0f0000, Type: "keyring", Describe: ".secondary_trusted_keys: 1"},
		{Serial: 0x2eab77f0, Perm: 0x1f0b0000, Type: "keyring", Describe: fmt.Sprintf(".machine: %d", len(machine))},
		{Serial: 0x2f10aa01, Perm: 0x1f0b0000, Type: "keyring", Describe: fmt.Sprintf(".platform: %d", len(platform))},
		{Serial: 0x0faa37d2, Flags: "I--Q---", Perm: 0x1f3f0000, GID: 65534, Type: "keyring", Describe: "_uid.0: empty"},
		{Serial: 0x32f83b0a, Perm: 0x1f030000, Type: "keyring", Describe: ".dns_resolver: empty"},
		AsymmetricKey(0x04e0b9a3, kernelkeys.KeyringBuiltin, build),
	}
	for i, c := range machine {
		keys = append(keys, AsymmetricKey(0x3a1c2b44+uint32(i), kernelkeys.KeyringMachine, c))
	}
	for i, c := range platform {
		keys = append(keys, AsymmetricKey(0x1b0cfe20+uint32(i), ".platform", c))
	}
	return append(keys, extra...)
}

func countIn(keys []Key, ring string) int {
	n := 0
	for _, k := range keys {
		if k.In == ring {
			n++
		}
	}
	return n
}

// keyringSource answers keyctl's KEYCTL_READ from the Keys' membership,
// as the live host's keyctl does (measure.KeyringReader).
type keyringSource struct {
	hostfs.Source
	members map[int32][]int32
}

func (k *keyringSource) ReadKeyring(serial int32) ([]int32, error) {
	m, ok := k.members[serial]
	if !ok {
		return nil, fmt.Errorf("keyctl read %08x: %w", serial, fs.ErrPermission)
	}
	return m, nil
}

// Inputs passes the wrapped source's input digests through.
func (k *keyringSource) Inputs() map[string]string {
	if in, ok := k.Source.(interface{ Inputs() map[string]string }); ok {
		return in.Inputs()
	}
	return nil
}

// Exists passes probes through.
func (k *keyringSource) Exists(dir, name string) bool {
	if p, ok := k.Source.(hostfs.Prober); ok {
		return p.Exists(dir, name)
	}
	_, err := k.Source.Lstat(dir + "/" + name)
	return err == nil
}

func withKeyrings(src hostfs.Source, keys []Key) hostfs.Source {
	rings := map[string]int32{}
	for _, k := range keys {
		if k.Type == "keyring" {
			name, _, _ := strings.Cut(k.Describe, ":")
			rings[name] = int32(k.Serial)
		}
	}
	members := map[int32][]int32{}
	for _, s := range rings {
		members[s] = []int32{}
	}
	for _, k := range keys {
		if s, ok := rings[k.In]; ok && k.In != "" {
			members[s] = append(members[s], int32(k.Serial))
		}
	}
	return &keyringSource{Source: src, members: members}
}
