package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runup/runup/internal/config"
	"github.com/runup/runup/internal/daemon"
)

func newSchedule(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "schedule",
		Short: "Start the daemon at boot, and see what it did and will do",
	}
	c.AddCommand(newScheduleInstall(g), newScheduleStatus(g))
	return c
}

type installOptions struct {
	user     bool
	format   string
	unitDir  string
	noEnable bool
	print    bool
}

func newScheduleInstall(g *globals) *cobra.Command {
	var o installOptions
	c := &cobra.Command{
		Use:   "install",
		Short: "Make the system start 'runup daemon' for this runup.yaml at boot",
		Long: `Write and enable what starts 'runup daemon' for this context at boot.

On Linux: a systemd unit, runup-NAME.service (NAME from the context's
folder), in /etc/systemd/system (as root) or, with --user, in
~/.config/systemd/user; then 'systemctl daemon-reload' and
'systemctl enable --now'. A user unit runs only while you are logged in
unless 'loginctl enable-linger' is set for you.

Elsewhere, or with --print, the unit is printed instead: --format launchd
gives a macOS LaunchAgent plist (save it in ~/Library/LaunchAgents and
'launchctl load' it), --format windows the schtasks command that creates
a task started at boot.

The daemon reads its password as every command does: use password: in
runup.yaml or --password-file (given here, it is written into the unit);
RUNUP_PASSWORD of this shell does not reach it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScheduleInstall(g, o)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.user, "user", false, "install a user unit (systemd --user) instead of a system one")
	f.StringVar(&o.format, "format", "", "systemd, launchd or windows (default: this system's)")
	f.StringVar(&o.unitDir, "unit-dir", "", "write the systemd unit here instead of the default directory")
	f.BoolVar(&o.noEnable, "no-enable", false, "write the unit, do not run systemctl")
	f.BoolVar(&o.print, "print", false, "print the unit or plist, install nothing")
	return c
}

// unitName is the service's name for the context: runup-<folder>.
func unitName(dir string) string {
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, filepath.Base(dir))
	if base == "" || base == "-" || base == "." {
		base = "root"
	}
	return "runup-" + base
}

// daemonArgs is the command line that starts the daemon for this context,
// with the flags given here that it needs.
func daemonArgs(g *globals, dir string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return nil, err
	}
	args := []string{exe, "--context", dir}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	if g.repo != "" {
		r := g.repo
		if !isURL(r) {
			r = abs(r)
		}
		args = append(args, "--repo", r)
	}
	if g.passwordFile != "" {
		args = append(args, "--password-file", abs(g.passwordFile))
	}
	if g.cacheDir != "" {
		args = append(args, "--cache-dir", abs(g.cacheDir))
	}
	if g.noCache {
		args = append(args, "--no-cache")
	}
	return append(args, "daemon"), nil
}

// systemdQuote quotes an argument for ExecStart=.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`)
	return `"` + r.Replace(s) + `"`
}

func systemdUnit(dir string, args []string, user bool) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = systemdQuote(a)
	}
	target := "multi-user.target"
	if user {
		target = "default.target"
	}
	return fmt.Sprintf(`# Written by 'runup schedule install'. Reinstall after changing it there.
[Unit]
Description=RunUp backups of %s
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=%s
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM interrupts the running backup cleanly; its after hooks still run.
KillSignal=SIGTERM
TimeoutStopSec=90
Restart=on-failure
RestartSec=30
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7

[Install]
WantedBy=%s
`, strings.ReplaceAll(dir, "%", "%%"), strings.Join(q, " "), target)
}

func launchdPlist(name string, args []string) string {
	var b strings.Builder
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	for _, a := range args {
		fmt.Fprintf(&b, "\t\t<string>%s</string>\n", esc.Replace(a))
	}
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Save as ~/Library/LaunchAgents/com.runup.%[1]s.plist, then: launchctl load ~/Library/LaunchAgents/com.runup.%[1]s.plist -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>com.runup.%[1]s</string>
	<key>ProgramArguments</key>
	<array>
%[2]s	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<true/>
	<key>ProcessType</key>
	<string>Background</string>
	<key>StandardOutPath</key>
	<string>/tmp/com.runup.%[1]s.log</string>
	<key>StandardErrorPath</key>
	<string>/tmp/com.runup.%[1]s.log</string>
</dict>
</plist>
`, name, b.String())
}

func windowsTask(name string, args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = `\"` + a + `\"`
	}
	return fmt.Sprintf("REM Run in an administrator's command prompt; the task starts at boot as SYSTEM.\r\n"+
		"schtasks /Create /TN \"RunUp %s\" /SC ONSTART /RU SYSTEM /RL HIGHEST /TR \"%s\"\r\n", name, strings.Join(q, " "))
}

func runScheduleInstall(g *globals, o installOptions) error {
	e, err := g.loadEnv()
	if err != nil {
		return err
	}
	if e.cfg == nil {
		return usageErr(errors.New("there is no runup.yaml here to schedule (use -c DIR)"))
	}
	plan, err := planOf(e.cfg)
	if err != nil {
		return err
	}
	if len(plan.Entries) == 0 {
		return usageErr(fmt.Errorf("%s schedules nothing: add cron: to a project first, e.g. cron: '0 3 * * *'", e.cfg.File))
	}
	args, err := daemonArgs(g, e.dir)
	if err != nil {
		return err
	}
	name := unitName(e.dir)
	format := o.format
	if format == "" {
		switch runtime.GOOS {
		case "darwin":
			format = "launchd"
		case "windows":
			format = "windows"
		default:
			format = "systemd"
		}
	}
	// installed is what --json prints: what was (or would be) written.
	type installed struct {
		Format  string `json:"format"`
		Name    string `json:"name"`
		Path    string `json:"path,omitempty"`
		Enabled bool   `json:"enabled"`
		Content string `json:"content"`
	}
	show := func(text string) error {
		if g.json {
			return writeJSON(g, installed{Format: format, Name: name, Content: text})
		}
		fmt.Fprint(g.stdout, text)
		return nil
	}
	switch format {
	case "launchd":
		return show(launchdPlist(name, args))
	case "windows":
		return show(windowsTask(name, args))
	case "systemd":
	default:
		return usageErr(fmt.Errorf("--format %q: want systemd, launchd or windows", format))
	}
	unit := systemdUnit(e.dir, args, o.user)
	if o.print {
		return show(unit)
	}
	dir := o.unitDir
	if dir == "" {
		if o.user {
			cfgDir, err := os.UserConfigDir()
			if err != nil {
				return err
			}
			dir = filepath.Join(cfgDir, "systemd", "user")
		} else {
			dir = "/etc/systemd/system"
		}
	}
	path := filepath.Join(dir, name+".service")
	if old, err := os.ReadFile(path); err == nil && !strings.Contains(string(old), "RunUp backups of "+e.dir+"\n") {
		return fmt.Errorf("%s exists and runs another context: remove it, or install from a folder of another name", path)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return installErr(err, o)
	}
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		return installErr(err, o)
	}
	g.printf("Wrote %s\n", path)
	systemctl := []string{"systemctl"}
	if o.user {
		systemctl = append(systemctl, "--user")
	}
	enable := strings.Join(append(systemctl, "enable", "--now", name+".service"), " ")
	done := func(enabled bool) error {
		if g.json {
			return writeJSON(g, installed{Format: format, Name: name, Path: path, Enabled: enabled, Content: unit})
		}
		return nil
	}
	if o.noEnable || o.unitDir != "" {
		g.printf("Enable it with: %s daemon-reload && %s\n", strings.Join(systemctl, " "), enable)
		return done(false)
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		return fmt.Errorf("systemctl is not here to enable %s: start 'runup daemon' another way (see 'runup schedule install --help')", path)
	}
	for _, step := range [][]string{append(append([]string{}, systemctl...), "daemon-reload"), append(append([]string{}, systemctl...), "enable", "--now", name+".service")} {
		out, err := exec.Command(step[0], step[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s (the unit is written; run it again when systemd runs)", strings.Join(step, " "), err, strings.TrimSpace(string(out)))
		}
	}
	g.printf("Enabled and started %s.service. Follow it with: journalctl %s-u %s -f\n", name, map[bool]string{true: "--user ", false: ""}[o.user], name)
	if o.user {
		g.printf("A user unit runs only while you are logged in; to run it always: loginctl enable-linger %s\n", os.Getenv("USER"))
	}
	return done(true)
}

func installErr(err error, o installOptions) error {
	if errors.Is(err, os.ErrPermission) && !o.user {
		return fmt.Errorf("%w: a system unit needs root; run with sudo, or use --user", err)
	}
	return err
}

func newScheduleStatus(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show each scheduled task's last run, its result, and its next run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.loadEnv()
			if err != nil {
				return err
			}
			if e.cfg == nil {
				return usageErr(errors.New("there is no runup.yaml here (use -c DIR)"))
			}
			return printScheduleStatus(g, e.cfg)
		},
	}
}

// statusRow is one task in 'schedule status'.
type statusRow struct {
	Task      string    `json:"task"`
	Schedule  string    `json:"schedule"`
	LastStart time.Time `json:"last_start,omitzero"`
	Result    string    `json:"result,omitempty"`
	Error     string    `json:"error,omitempty"`
	Job       int       `json:"job,omitempty"`
	Running   bool      `json:"running,omitempty"`
	Next      time.Time `json:"next,omitzero"`
}

type scheduleStatus struct {
	Config        string      `json:"config"`
	StateFile     string      `json:"state_file"`
	DaemonRunning bool        `json:"daemon_running"`
	DaemonPID     int         `json:"daemon_pid,omitempty"`
	Tasks         []statusRow `json:"tasks"`
}

func printScheduleStatus(g *globals, cfg *config.Config) error {
	plan, err := planOf(cfg)
	if err != nil {
		return err
	}
	dir, err := daemon.StateDir()
	if err != nil {
		return err
	}
	sf := daemon.OpenState(dir, cfg.File, nil)
	st := sf.Load()
	now := time.Now()
	out := scheduleStatus{Config: cfg.File, StateFile: sf.Path(), Tasks: []statusRow{}}
	if st.Daemon.Alive(now) {
		out.DaemonRunning, out.DaemonPID = true, st.Daemon.PID
	}
	for _, e := range plan.Entries {
		ts := st.Tasks[e.Task.String()]
		row := statusRow{Task: e.Task.String(), Schedule: e.Schedule.String(), LastStart: ts.LastStart, Result: ts.Result,
			Error: ts.Error, Job: ts.Job, Running: ts.Running && out.DaemonRunning}
		if !ts.LastStart.IsZero() {
			row.Next = e.Schedule.NextRun(ts.LastStart, now)
		}
		out.Tasks = append(out.Tasks, row)
	}
	if g.json {
		return writeJSON(g, out)
	}
	if out.DaemonRunning {
		g.printf("daemon: running (pid %d, since %s)\n", st.Daemon.PID, st.Daemon.Started.Local().Format("2006-01-02 15:04"))
	} else {
		g.printf("daemon: not running (start it with 'runup daemon', or 'runup schedule install')\n")
	}
	if len(out.Tasks) == 0 {
		g.printf("%s schedules nothing: add cron: to a project.\n", cfg.File)
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "task\tschedule\tlast run\tresult\tnext run")
	for _, r := range out.Tasks {
		last, result, next := "never", "-", "at daemon start"
		if !r.LastStart.IsZero() {
			last = r.LastStart.Local().Format("2006-01-02 15:04")
		}
		if r.Result != "" {
			result = r.Result
			if r.Job > 0 && r.Result == daemon.ResultSuccess {
				result += fmt.Sprintf(" (job %d)", r.Job)
			}
		}
		if r.Running {
			result = "running"
		}
		if !r.Next.IsZero() {
			next = r.Next.Local().Format("2006-01-02 15:04")
			if !r.Next.After(now) {
				next = "now (missed)"
			}
		}
		if !g.quiet {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Task, r.Schedule, last, result, next)
		}
	}
	tw.Flush()
	for _, r := range out.Tasks {
		if r.Result == daemon.ResultFailure && r.Error != "" {
			g.printf("%s failed: %s\n", r.Task, oneLine(r.Error))
		}
	}
	return nil
}
