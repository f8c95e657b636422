package pvcsync

import (
	"errors"
	"fmt"
	"strings"
)

// senderCommand is an exec request that the agent has checked: an rsync
// sender (read side) with options from the allowlist and the paths it asked
// for, not yet resolved.
type senderCommand struct {
	// Options are the options to hand to rsync, in the order received,
	// between "--server --sender" and ".".
	Options []string
	// Paths are the source paths as requested (unescaped).
	Paths []string
}

// errUnsafeCommand is the class of every refusal of an exec command.
var errUnsafeCommand = errors.New("command refused")

// Letters allowed in the short-option cluster that rsync sends to its server,
// before the "e" that starts the capability string. Measured with rsync 3.5:
// `rsync -aHAX --numeric-ids --delete --partial --sparse --inplace
// --info=progress2 --stats` sends "-lHogDtpAXrSe.iLsfxCIvu --numeric-ids
// --inplace"; -a alone is "-logDtpre.iLsfxCIvu". --delete, --partial, --info
// and --stats are the receiver's business and do not reach the sender.
//
// Only letters whose effect on a sender is to read and describe files are
// here. Left out on purpose, among others: L (--copy-links) and k
// (--copy-dirlinks) follow symlinks out of the volume; s (--protect-args /
// --secluded-args) moves the paths into the protocol, where the agent could
// not check them; R (--relative, also implied by --files-from) changes what
// a path names.
var allowedShortOptions = map[byte]string{
	'l': "--links",
	'H': "--hard-links",
	'o': "--owner",
	'g': "--group",
	'D': "--devices --specials",
	't': "--times",
	'p': "--perms",
	'A': "--acls",
	'X': "--xattrs",
	'r': "--recursive",
	'S': "--sparse",
	'v': "--verbose",
	'n': "--dry-run",
	'z': "--compress",
	'c': "--checksum",
	'x': "--one-file-system",
	'W': "--whole-file",
}

// allowedLongOptions are long options a sender may receive, each with a check
// of its value ("" when it takes none). Anything else is refused, including
// --remove-source-files (a write on the source), --copy-unsafe-links,
// --files-from/--exclude-from/--include-from (they make the server read a
// file of its own), --log-file, --write-batch, --temp-dir, --copy-devices
// (reads block devices' contents) and --iconv.
var allowedLongOptions = map[string]func(string) bool{
	"--numeric-ids":     nil,
	"--inplace":         nil,
	"--safe-links":      nil,
	"--open-noatime":    nil,
	"--bwlimit":         isDigits,
	"--timeout":         isDigits,
	"--compress-level":  isDigits,
	"--checksum-choice": isWord,
	"--compress-choice": isWord,
}

// parseSenderCommand checks the command of an exec request: it must be what an
// rsync client asks its remote shell to run to read files, `rsync --server
// --sender <options> . <path>...`, with every option in the allowlist. Paths
// are returned unescaped and unchecked: the agent resolves them.
//
// The command is one string, as ssh joins the client's argv with spaces.
// rsync 3.5 escapes shell characters in paths with a backslash (its default
// since 3.2.4; --old-args turns that off) and never quotes. This parser
// undoes the backslashes, splits on unescaped blanks and refuses any other
// character that a shell would interpret (quotes, $, ;, |, &, <, >, (, ), {,
// }, !, #, a leading ~, and the glob characters * ? [ ]): no shell runs here,
// so a command whose meaning depends on one is refused rather than guessed.
//
// --protect-args (-s) is refused: with it the client sends the paths inside
// the rsync protocol after the command starts, where they cannot be checked.
func parseSenderCommand(command string) (senderCommand, error) {
	args, err := splitCommand(command)
	if err != nil {
		return senderCommand{}, err
	}
	if len(args) < 3 || args[0] != "rsync" || args[1] != "--server" {
		return senderCommand{}, fmt.Errorf("%w: not an rsync server command", errUnsafeCommand)
	}
	if args[2] != "--sender" {
		return senderCommand{}, fmt.Errorf("%w: rsync server without --sender (a write)", errUnsafeCommand)
	}
	var cmd senderCommand
	rest := args[3:]
	dot := -1
	for i, a := range rest {
		if a == "." {
			dot = i
			break
		}
		if err := checkServerOption(a); err != nil {
			return senderCommand{}, err
		}
		cmd.Options = append(cmd.Options, a)
	}
	if dot < 0 {
		return senderCommand{}, fmt.Errorf("%w: no \".\" before the paths (protect-args or not an rsync client)", errUnsafeCommand)
	}
	cmd.Paths = rest[dot+1:]
	if len(cmd.Paths) == 0 {
		return senderCommand{}, fmt.Errorf("%w: no path", errUnsafeCommand)
	}
	for _, p := range cmd.Paths {
		if strings.HasPrefix(p, "-") {
			return senderCommand{}, fmt.Errorf("%w: option %q after the paths", errUnsafeCommand, p)
		}
	}
	return cmd, nil
}

// checkServerOption accepts one option from the allowlists.
func checkServerOption(a string) error {
	switch {
	case strings.HasPrefix(a, "--"):
		name, value, hasValue := strings.Cut(a, "=")
		check, ok := allowedLongOptions[name]
		if !ok {
			return fmt.Errorf("%w: option %s not allowed", errUnsafeCommand, name)
		}
		if check == nil && hasValue || check != nil && (!hasValue || !check(value)) {
			return fmt.Errorf("%w: option %s: bad value", errUnsafeCommand, name)
		}
		return nil
	case strings.HasPrefix(a, "-B"):
		// --block-size=N travels as -BN.
		if !isDigits(a[2:]) {
			return fmt.Errorf("%w: option -B: bad value", errUnsafeCommand)
		}
		return nil
	case strings.HasPrefix(a, "-") && len(a) > 1:
		return checkShortCluster(a[1:])
	}
	return fmt.Errorf("%w: unexpected argument %q before \".\"", errUnsafeCommand, a)
}

// checkShortCluster accepts "lHogDtpAXrSe.iLsfxCIvu": allowed letters, then
// optionally "e" and the client's capability string (protocol ≥ 30), which
// is letters and dots only: it is negotiation, not options, so its letters
// mean something else (the "s" and "L" there are not -s and -L).
func checkShortCluster(s string) error {
	flags, caps, hasCaps := strings.Cut(s, "e")
	for i := 0; i < len(flags); i++ {
		if _, ok := allowedShortOptions[flags[i]]; !ok {
			return fmt.Errorf("%w: option -%c not allowed", errUnsafeCommand, flags[i])
		}
	}
	if hasCaps {
		for i := 0; i < len(caps); i++ {
			c := caps[i]
			if c != '.' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') {
				return fmt.Errorf("%w: bad capability string", errUnsafeCommand)
			}
		}
	} else if flags == "" {
		return fmt.Errorf("%w: empty option", errUnsafeCommand)
	}
	return nil
}

// splitCommand splits a command line the way a POSIX shell would split
// rsync's output of it, refusing any input where a shell would do more than
// split words and drop backslashes.
func splitCommand(command string) ([]string, error) {
	var (
		args    []string
		cur     strings.Builder
		inWord  bool
		escaped bool
	)
	for i := 0; i < len(command); i++ {
		c := command[i]
		if escaped {
			if c == '\n' {
				return nil, fmt.Errorf("%w: escaped newline", errUnsafeCommand)
			}
			cur.WriteByte(c)
			escaped = false
			continue
		}
		switch c {
		case '\\':
			escaped, inWord = true, true
		case ' ', '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case '~':
			if !inWord {
				return nil, fmt.Errorf("%w: unescaped leading ~", errUnsafeCommand)
			}
			cur.WriteByte(c)
		default:
			if c == '\n' || c == 0 || strings.IndexByte(shellSpecial, c) >= 0 {
				return nil, fmt.Errorf("%w: unescaped shell character %q", errUnsafeCommand, c)
			}
			cur.WriteByte(c)
			inWord = true
		}
	}
	if escaped {
		return nil, fmt.Errorf("%w: trailing backslash", errUnsafeCommand)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// shellSpecial are the characters a shell would interpret when unescaped;
// rsync escapes all but the glob ones in paths, and there is no shell to
// expand globs.
const shellSpecial = "!\"#$&'()*;<>?[]`{|}"

func isDigits(s string) bool {
	if s == "" || len(s) > 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isWord(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == ',') {
			return false
		}
	}
	return true
}
