package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as a configuration file. Loading must
// never panic; it yields either problems that all name the file, or a
// configuration that validates and survives Marshal and a reload intact.
//
//	go test -run '^$' -fuzz FuzzLoad -fuzztime 60s ./internal/config
func FuzzLoad(f *testing.F) {
	shipped, err := os.ReadFile(filepath.Join(repoRoot(), "configs", "kechod.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(shipped),
		"",
		"module:\n  port: 7777\nhealth:\n  interval: 2s\n",
		"module: {port: abc, nmae: x}\n",
		"health:\n  interval: 5\n  timeout: 10s\n",
		"a: &a [*a]\n",
		"module: &m {port: 1}\nhealth: *m\n",
		"--- 1\n--- 2\n",
		"module:\n  <<: {port: 1}\n",
		"\xff\xfe\x00",
		"metrics:\n  listen: '[::1]:9555'\nlog: {level: debug, format: json}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "/etc/kechod/kechod.yaml"
		c, _, ps, cross := build([]input{{name, data}}, nil, nil)
		all := append(ps, cross...)
		if len(all) > 0 {
			for _, p := range all {
				if p.Source != name && p.Source != "" {
					t.Fatalf("problem names %q, not the file: %v", p.Source, p)
				}
				if p.Msg == "" {
					t.Fatalf("problem without a message: %+v", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded a config that does not validate: %v\n%q", err, data)
		}
		again, _, ps2, cross2 := build([]input{{"marshalled", c.Marshal()}}, nil, nil)
		if len(ps2)+len(cross2) > 0 {
			t.Fatalf("Marshal output does not load: %v\n%s", append(ps2, cross2...), c.Marshal())
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, again)
		}
	})
}
