package pvcsync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestGenerateAndLoadAgentKeys(t *testing.T) {
	dir := t.TempDir()
	must(t, GenerateAgentKeys(dir))
	if err := GenerateAgentKeys(dir); err == nil {
		t.Errorf("GenerateAgentKeys overwrote existing keys")
	}
	fi, err := os.Stat(filepath.Join(dir, HostKeyFile))
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v, want 0600", fi.Mode().Perm())
	}
	cfg, err := LoadAgentConfig(filepath.Join(dir, HostKeyFile), "", filepath.Join(dir, UserCAFile+".pub"))
	must(t, err)
	ca, err := LoadSigner(filepath.Join(dir, UserCAFile))
	must(t, err)
	if len(cfg.UserCAs) != 1 || string(cfg.UserCAs[0].Marshal()) != string(ca.PublicKey().Marshal()) {
		t.Errorf("user CA did not round-trip")
	}
	c, err := IssueCredentials(ca, cfg.HostKey.PublicKey(), []string{"10.0.0.5", "[10.0.0.6]:2200"}, "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount", time.Hour)
	must(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(c.Certificate)
	must(t, err)
	cert := pub.(*ssh.Certificate)
	if cert.CriticalOptions[PathOption] != "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount" ||
		len(cert.Extensions) != 0 || cert.ValidPrincipals[0] != AgentUser {
		t.Errorf("certificate = %+v", cert.Permissions)
	}
	for _, want := range []string{"10.0.0.5,[10.0.0.5]:2222,[10.0.0.6]:2200 ssh-ed25519 "} {
		if !strings.Contains(string(c.KnownHosts), want) {
			t.Errorf("known_hosts %q lacks %q", c.KnownHosts, want)
		}
	}
	if _, err := IssueCredentials(ca, cfg.HostKey.PublicKey(), []string{"h"}, "relative", time.Hour); err == nil {
		t.Errorf("relative path accepted")
	}
}
