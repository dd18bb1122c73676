// Command pulumi-language-python is kloudctl's own minimal Pulumi language host for Python.
//
// Pulumi's Go language host is not on our Go module proxy, so the CLI could not run a
// `runtime: python` project with a plain `pulumi up`. This host does the one thing the CLI needs
// from it: run the program. The CLI starts it with the engine's address as the last argument; it
// serves the LanguageRuntime gRPC service on a free loopback port, printed on stdout.
//
// Run starts `PYTHON -u pulumi-language-python-exec --monitor ... PROGRAM` (the exec shim from the
// sdk/v3 module, found next to this binary), with the stack's configuration in the environment
// (PULUMI_CONFIG, PULUMI_CONFIG_SECRET_KEYS). PYTHON is `bin/python` of the virtual environment
// named by the project's `runtime.options.virtualenv` (relative to the project root), or else
// $PULUMI_PYTHON_CMD, or else python3 on PATH. Dependencies are kloudctl's virtualenv's business:
// InstallDependencies installs nothing, and no plugins are required (we use dynamic providers).
// Everything the CLI may ask beyond that answers codes.Unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is stamped by scripts/tools.sh (-ldflags -X main.version=...): the sdk/v3 version.
var version = "0.0.0-dev"

const (
	execShim = "pulumi-language-python-exec"
	// The exec shim exits with this code once it has reported the error to the user itself.
	exitAfterUserMessage = 32
	// How long a cancelled program gets between SIGINT and SIGKILL.
	cancelGrace = 10 * time.Second
)

func main() {
	// The CLI passes only the engine address; these flags are accepted for compatibility with
	// how other tools start a language host.
	tracing := flag.String("tracing", "", "Zipkin-compatible tracing endpoint, passed on to the program")
	root := flag.String("root", "", "project root (the CLI sends it in Handshake and ProgramInfo instead)")
	flag.String("virtualenv", "", "ignored: the virtualenv comes from Pulumi.yaml runtime.options")
	executor := flag.String("use-executor", "", "path of the exec shim (default: "+execShim+" next to this binary)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}

	shim := *executor
	if shim == "" {
		var err error
		if shim, err = defaultShim(); err != nil {
			fail(err)
		}
	}
	host := &pythonHost{shim: shim, tracing: *tracing, root: *root}
	if flag.NArg() > 0 {
		host.engine = flag.Arg(0)
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fail(fmt.Errorf("could not start the language host's gRPC server: %w", err))
	}
	// The CLI reads the port from our first line of output.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(fmt.Errorf("the language host's gRPC server stopped: %w", err))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

// defaultShim finds the exec shim next to this binary (symlinks resolved).
func defaultShim() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find my own executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	shim := filepath.Join(filepath.Dir(self), execShim)
	if _, err := os.Stat(shim); err != nil {
		return "", fmt.Errorf("%s is not next to the language host (%s); run `make tools`", execShim, shim)
	}
	return shim, nil
}

type pythonHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	shim    string
	engine  string
	tracing string

	mu   sync.Mutex
	root string // from the command line or Handshake; ProgramInfo takes precedence
}

// Handshake records the engine address and project root the CLI sends.
func (h *pythonHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engine = req.GetEngineAddress()
	}
	if req.RootDirectory != nil {
		h.root = req.GetRootDirectory()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *pythonHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetRequiredPlugins: none. kloudctl's programs use dynamic providers only, which the CLI serves
// with its bundled pulumi-resource-pulumi-python.
func (h *pythonHost) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *pythonHost) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// InstallDependencies installs nothing: the virtualenv is kloudctl's (make venv), pinned there.
func (h *pythonHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest,
	server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	python, err := h.python(req.GetInfo())
	msg := "Dependencies are managed by kloudctl's virtualenv (`make venv`); nothing to install.\n"
	if err == nil {
		msg += "Python: " + python.path + "\n"
	} else {
		msg += "Warning: " + err.Error() + "\n"
	}
	return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(msg)})
}

func (h *pythonHost) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

// About reports the Python the program would run with.
func (h *pythonHost) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	python, err := h.python(req.GetInfo())
	if err != nil {
		return nil, err
	}
	out, err := python.output(ctx, "-c", "import sys, platform; print(sys.executable); print(platform.python_version())")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		return nil, fmt.Errorf("unexpected output from %s: %q", python.path, out)
	}
	return &pulumirpc.AboutResponse{Executable: lines[0], Version: lines[1]}, nil
}

// GetProgramDependencies lists the distributions installed in the program's Python.
func (h *pythonHost) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	python, err := h.python(req.GetInfo())
	if err != nil {
		return nil, err
	}
	out, err := python.output(ctx, "-c", "import importlib.metadata as m, json; "+
		"print(json.dumps(sorted({d.metadata['Name']: d.version for d in m.distributions()}.items())))")
	if err != nil {
		return nil, err
	}
	var pairs [][2]string
	if err := json.Unmarshal([]byte(out), &pairs); err != nil {
		return nil, fmt.Errorf("cannot parse the list of installed packages from %s: %w", python.path, err)
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(pairs))
	for _, p := range pairs {
		deps = append(deps, &pulumirpc.DependencyInfo{Name: p[0], Version: p[1]})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// Run runs the program through the exec shim and reports how it ended: Bail when the program
// already told the user what went wrong (exit 32), Error otherwise.
func (h *pythonHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	python, err := h.python(info)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	args, err := h.shimArgs(req)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	env := python.environ()
	config, err := json.Marshal(nonNilMap(req.GetConfig()))
	if err != nil {
		return nil, fmt.Errorf("cannot serialise the configuration: %w", err)
	}
	secretKeys, err := json.Marshal(nonNilSlice(req.GetConfigSecretKeys()))
	if err != nil {
		return nil, fmt.Errorf("cannot serialise the secret configuration keys: %w", err)
	}
	env = append(env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys))

	cmd := exec.CommandContext(ctx, python.path, append([]string{"-u", h.shim}, args...)...)
	cmd.Env = env
	cmd.Dir = req.GetPwd()
	// The CLI shows our stdout and stderr to the user, as the program's output.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	// If the CLI gives up on the run, let Python stop cleanly first.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = cancelGrace

	runErr := cmd.Run()
	_ = os.Stdout.Sync()
	_ = os.Stderr.Sync()
	if runErr == nil {
		return &pulumirpc.RunResponse{}, nil
	}
	var exitErr *exec.ExitError
	if !errors.As(runErr, &exitErr) {
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("could not run the Python program with %s: %v", python.path, runErr),
		}, nil
	}
	if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("the Python program was killed by signal %v", status.Signal()),
		}, nil
	}
	if exitErr.ExitCode() == exitAfterUserMessage {
		return &pulumirpc.RunResponse{Bail: true}, nil
	}
	return &pulumirpc.RunResponse{
		Error: fmt.Sprintf("the Python program exited with code %d", exitErr.ExitCode()),
	}, nil
}

// shimArgs builds the exec shim's command line (see its argparse) from a RunRequest.
func (h *pythonHost) shimArgs(req *pulumirpc.RunRequest) ([]string, error) {
	info := req.GetInfo()
	h.mu.Lock()
	engine, root := h.engine, h.root
	h.mu.Unlock()
	if info.GetRootDirectory() != "" {
		root = info.GetRootDirectory()
	}

	var args []string
	add := func(flag, value string) {
		if value != "" {
			args = append(args, "--"+flag, value)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", engine)
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("tracing", h.tracing)
	add("organization", req.GetOrganization())
	add("root_directory", root)

	program := info.GetEntryPoint()
	if program == "" {
		program = req.GetProgram() //nolint:staticcheck // older CLIs send only this
	}
	if program == "" {
		program = "."
	}
	if dir := info.GetProgramDirectory(); dir != "" && !filepath.IsAbs(program) {
		program = filepath.Join(dir, program)
	}
	if _, err := os.Stat(program); err != nil {
		return nil, fmt.Errorf("the Python program %s does not exist", program)
	}
	args = append(args, program)
	return append(args, req.GetArgs()...), nil
}

// pythonCmd is the interpreter a program runs with, and the virtualenv it belongs to if any.
type pythonCmd struct {
	path       string
	virtualenv string
}

// python picks the interpreter from the project's runtime options: `virtualenv` (absolute, or
// relative to the project root) means VIRTUALENV/bin/python; otherwise $PULUMI_PYTHON_CMD or
// python3 from PATH.
func (h *pythonHost) python(info *pulumirpc.ProgramInfo) (pythonCmd, error) {
	opts := info.GetOptions().AsMap()
	if tc, ok := opts["toolchain"].(string); ok && tc != "" && tc != "pip" {
		return pythonCmd{}, fmt.Errorf(
			"runtime option toolchain %q is not supported by kloudctl's Python language host (use virtualenv)", tc)
	}
	venv, _ := opts["virtualenv"].(string)
	if venv == "" {
		name := os.Getenv("PULUMI_PYTHON_CMD")
		if name == "" {
			name = "python3"
		}
		path, err := exec.LookPath(name)
		if err != nil {
			return pythonCmd{}, fmt.Errorf("%s is not on PATH and Pulumi.yaml names no virtualenv: %w", name, err)
		}
		return pythonCmd{path: path}, nil
	}
	if !filepath.IsAbs(venv) {
		h.mu.Lock()
		root := h.root
		h.mu.Unlock()
		if info.GetRootDirectory() != "" {
			root = info.GetRootDirectory()
		}
		venv = filepath.Join(root, venv)
	}
	path := filepath.Join(venv, "bin", "python")
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return pythonCmd{}, fmt.Errorf(
			"the 'virtualenv' runtime option in Pulumi.yaml names %s, but %s does not exist; "+
				"create it with `make venv` in the kloudctl checkout", venv, path)
	}
	return pythonCmd{path: path, virtualenv: venv}, nil
}

// environ is our environment, with the virtualenv activated when there is one.
func (p pythonCmd) environ() []string {
	env := os.Environ()
	if p.virtualenv == "" {
		return env
	}
	out := make([]string, 0, len(env)+2)
	path := ""
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "PYTHONHOME="), strings.HasPrefix(kv, "VIRTUAL_ENV="):
		case strings.HasPrefix(kv, "PATH="):
			path = strings.TrimPrefix(kv, "PATH=")
		default:
			out = append(out, kv)
		}
	}
	bin := filepath.Join(p.virtualenv, "bin")
	if path != "" {
		bin += string(os.PathListSeparator) + path
	}
	return append(out, "VIRTUAL_ENV="+p.virtualenv, "PATH="+bin)
}

// output runs the interpreter with args and returns its stdout.
func (p pythonCmd) output(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, p.path, args...)
	cmd.Env = p.environ()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s failed: %w: %s", p.path, strings.Join(args[:1], " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
