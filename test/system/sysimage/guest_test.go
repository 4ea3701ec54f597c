package sysimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseReport(t *testing.T) {
	raw := "noise before\r\n=== report kecho-systemcheck\r\n" +
		"=== begin is-active\r\nactive\r\n=== end is-active rc=0 t=61.20\r\n" +
		"=== begin show\r\nActiveState=active\r\nNRestarts=0\r\nStatusText=healthy · kecho :5555\r\n=== end show rc=0 t=62.00\r\n" +
		"=== begin reload\r\nreload_ms=812\r\n=== end reload rc=1\r\n" +
		"=== begin stop\r\n"
	r, err := ParseReport([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if r.Done {
		t.Error("Done without a done line")
	}
	if got := strings.Join(r.Order, ","); got != "is-active,show,reload" {
		t.Errorf("order %q (an unterminated step is not a step)", got)
	}
	if s := r.Steps["is-active"]; s.Out != "active" || s.RC != 0 || s.Uptime != 61.2 {
		t.Errorf("is-active: %+v", s)
	}
	if s := r.Steps["reload"]; s.RC != 1 || s.Out != "reload_ms=812" {
		t.Errorf("reload: %+v", s)
	}
	show := r.Steps["show"]
	if show.Prop("NRestarts") != "0" || show.Prop("StatusText") != "healthy · kecho :5555" || show.Prop("Missing") != "" {
		t.Errorf("Prop: %+v", show)
	}
	if tl := r.Timeline(); tl != "is-active@61s show@62s reload@0s" {
		t.Errorf("timeline %q", tl)
	}
	r, err = ParseReport([]byte(raw + "x\n=== end stop rc=0\n=== done\n"))
	if err != nil || !r.Done || r.Steps["stop"].Out != "x" {
		t.Errorf("complete report: %v %+v", err, r)
	}
	if _, err := ParseReport([]byte("[    1.0] kernel panic\n")); err == nil {
		t.Error("a console without a report must be an error")
	}
}

func TestCheckScriptAndUnit(t *testing.T) {
	if !strings.HasPrefix(checkScript, "#!/bin/bash\n") || !strings.Contains(checkScript, "systemctl --no-block poweroff") {
		t.Fatal("the check script must be bash and power the guest off")
	}
	p := filepath.Join(t.TempDir(), "check")
	if err := os.WriteFile(p, []byte(checkScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command("shellcheck", "-s", "bash", "-S", "warning", p).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	}
	for _, want := range []string{"ExecStart=" + checkScriptPath, "After=multi-user.target kechod.service", "WantedBy=multi-user.target"} {
		if !strings.Contains(checkUnit, want) {
			t.Errorf("check unit lacks %q", want)
		}
	}
}
