// mimobox test init: PID 1 of the guest until the agent exists. It mounts the pseudo
// filesystems, prints a ready marker on the serial console and then does what the kernel
// command line asks through `mimobox.test=`:
//   idle (or anything unknown): idle   cpus     print the online CPU count, then idle
//   count      print a counter forever exit=N   exit with code N (the kernel then panics)
//   abort      die by SIGABRT          reboot   ask the kernel to reboot (reboot=t ends the VM)
//   vsock=PORT print the vsock CID, connect to the host (CID 2) at PORT, print the outcome
//   vsock-echo=PORT   echo server on guest vsock PORT, a process per connection
//   vsock-hello=PORT  connect to the host at PORT, send a greeting, print the reply
//   agent      run the guest agent (/init, not as PID 1: it only serves) as a child, keep reaping
//   vsock-bench=PORT  per connection: 'S' = sink until EOF then reply the byte count (u64);
//                     'G' + u64 N = send N bytes then close
//   spin       loop forever without a VM exit     mute-agent=N  an agent on port 52 that
//              answers N requests (ping, init), then keeps every connection, silent
//   hangup-agent=N  the same N answers, then hangs up on one request and answers the rest
//              with a directory's stat
// Static, C library only: it has to start before anything else exists in the guest.
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace {

void mount_pseudo_filesystems() {
    ::mkdir("/proc", 0555);
    ::mkdir("/sys", 0555);
    ::mkdir("/dev", 0755);
    ::mkdir("/tmp", 01777);
    ::mount("proc", "/proc", "proc", 0, nullptr);
    ::mount("sysfs", "/sys", "sysfs", 0, nullptr);
    ::mount("devtmpfs", "/dev", "devtmpfs", 0, nullptr);
    ::mount("tmpfs", "/tmp", "tmpfs", 0, nullptr);
}

// The initramfs has no /dev/console node, so the kernel could not give init a console:
// open it from devtmpfs ourselves.
void attach_console() {
    int fd = ::open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0) return;
    ::dup2(fd, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (fd > 2) ::close(fd);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
}

std::string cmdline_value(const char* key) {
    std::FILE* f = std::fopen("/proc/cmdline", "r");
    if (!f) return {};
    char buf[4096] = {};
    std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    std::string line(buf), prefix = std::string(key) + "=";
    for (std::size_t pos = 0; pos < line.size();) {
        std::size_t end = line.find_first_of(" \n", pos);
        if (end == std::string::npos) end = line.size();
        std::string token = line.substr(pos, end - pos);
        if (token.rfind(prefix, 0) == 0) return token.substr(prefix.size());
        if (token == key) return "1";
        pos = end + 1;
    }
    return {};
}

void vsock_probe(unsigned port) {
    unsigned cid = 0;
    int dev = ::open("/dev/vsock", O_RDONLY);
    if (dev >= 0 && ::ioctl(dev, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) == 0) std::printf("MIMOBOX_VSOCK_CID=%u\n", cid);
    else std::printf("MIMOBOX_VSOCK_CID=error:%s\n", std::strerror(errno));
    int s = ::socket(AF_VSOCK, SOCK_STREAM, 0);
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_HOST;
    addr.svm_port = port;
    if (s >= 0 && ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) std::printf("MIMOBOX_VSOCK_CONNECT=ok\n");
    else std::printf("MIMOBOX_VSOCK_CONNECT=%s\n", std::strerror(errno));
}

bool read_exact(int fd, void* p, std::size_t n) {
    auto* b = static_cast<char*>(p);
    while (n) {
        ssize_t r = ::read(fd, b, n);
        if (r <= 0) return false;
        b += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

void vsock_bench_connection(int c) {
    static char buf[64 * 1024];
    char cmd = 0;
    if (!read_exact(c, &cmd, 1)) return;
    if (cmd == 'S') {
        std::uint64_t total = 0;
        for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;) total += static_cast<std::uint64_t>(n);
        (void)::write(c, &total, sizeof total);
    } else if (cmd == 'G') {
        std::uint64_t want = 0;
        if (!read_exact(c, &want, sizeof want)) return;
        std::memset(buf, 0x5a, sizeof buf);
        while (want) {
            ssize_t w = ::write(c, buf, std::min<std::uint64_t>(want, sizeof buf));
            if (w <= 0) return;
            want -= static_cast<std::uint64_t>(w);
        }
    }
}

[[noreturn]] void vsock_server(unsigned port, void (*serve)(int)) {
    int ls = ::socket(AF_VSOCK, SOCK_STREAM, 0);
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = port;
    if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(ls, 64) != 0) {
        std::printf("MIMOBOX_VSOCK_SERVER=error:%s\n", std::strerror(errno));
        for (;;) ::pause();
    }
    std::printf("MIMOBOX_VSOCK_SERVER=listening\n");
    std::fflush(stdout);
    for (;;) {
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        int c = ::accept(ls, nullptr, nullptr);
        if (c < 0) continue;
        if (::fork() == 0) {
            serve(c);
            ::close(c);
            ::_exit(0);
        }
        ::close(c);
    }
}

void vsock_echo_connection(int c) {
    static char buf[64 * 1024];
    for (;;) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) return;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = ::write(c, buf + off, static_cast<std::size_t>(n - off));
            if (w <= 0) return;
            off += w;
        }
    }
}

void vsock_hello(unsigned port) {
    int s = ::socket(AF_VSOCK, SOCK_STREAM, 0);
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_HOST;
    addr.svm_port = port;
    for (int attempt = 0; attempt < 50; ++attempt) {  // the host may start listening a little later
        if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
        ::close(s);
        s = ::socket(AF_VSOCK, SOCK_STREAM, 0);
        timespec ts{0, 100'000'000};
        ::nanosleep(&ts, nullptr);
    }
    const char hello[] = "hello from the guest";
    if (::write(s, hello, sizeof hello - 1) != static_cast<ssize_t>(sizeof hello - 1)) {
        std::printf("MIMOBOX_VSOCK_HELLO=error:%s\n", std::strerror(errno));
        return;
    }
    ::shutdown(s, SHUT_WR);
    char reply[256] = {};
    std::size_t got = 0;
    for (ssize_t n; got < sizeof reply - 1 && (n = ::read(s, reply + got, sizeof reply - 1 - got)) > 0;) got += static_cast<std::size_t>(n);
    std::printf("MIMOBOX_VSOCK_REPLY=%s\n", reply);
    ::close(s);
}

[[noreturn]] void idle() {
    for (;;) ::pause();
}

// A guest agent that misbehaves after its start: it accepts on vsock PORT and answers the first
// `answered` requests as the agent would (a pong, then ok). Then, `mute`: accepts connections
// and keeps them, never reading or answering. Otherwise it hangs up on the next request
// without an answer and answers every later one with the stat of a directory (all the host's
// next operation needs). Hand-written frames: the test init links no JSON.
[[noreturn]] void mute_agent(unsigned port, int answered, bool mute) {
    const int ls = ::socket(AF_VSOCK, SOCK_STREAM, 0);
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = port;
    if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(ls, 64) != 0) {
        std::printf("MIMOBOX_MUTE=error:%s\n", std::strerror(errno));
        idle();
    }
    std::printf("MIMOBOX_MUTE=listening\n");
    auto reply = [](int c, const std::string& json) {
        std::string frame(5, '\0');
        const auto n = static_cast<std::uint32_t>(json.size() + 1);
        for (int i = 0; i < 4; ++i) frame[static_cast<std::size_t>(i)] = static_cast<char>(n >> (8 * i));
        frame[4] = 1;  // message
        frame += json;
        [[maybe_unused]] auto w = ::write(c, frame.data(), frame.size());
    };
    for (int served = 0;; ++served) {
        const int c = ::accept(ls, nullptr, nullptr);
        if (c < 0) continue;
        if (mute && served >= answered) continue;  // keep it open, read nothing, never say a word
        char buf[4096];
        [[maybe_unused]] auto n = ::read(c, buf, sizeof buf);  // the request (small, one read)
        if (served == 0) reply(c, R"({"v":1,"type":"pong","agent_version":"mute"})");
        else if (served < answered) reply(c, R"({"v":1,"type":"ok"})");
        else if (served > answered) reply(c, R"({"v":1,"type":"stat","file_type":"dir","size":0,"mode":493,"mtime_ns":0})");
        ::close(c);  // served == answered: the hang-up, with the request read and nothing said
    }
}

}  // namespace

int main() {
    mount_pseudo_filesystems();
    attach_console();
    std::string mode = cmdline_value("mimobox.test");
    std::printf("MIMOBOX_READY\n");
    if (mode == "cpus") {
        std::printf("MIMOBOX_CPUS=%ld\n", ::sysconf(_SC_NPROCESSORS_ONLN));
        idle();
    }
    if (mode == "count") {
        for (unsigned long i = 0;; ++i) {
            std::printf("MIMOBOX_COUNT=%lu\n", i);
            timespec ts{0, 20'000'000};
            ::nanosleep(&ts, nullptr);
        }
    }
    if (mode.rfind("exit=", 0) == 0) {
        int code = std::atoi(mode.c_str() + 5);
        std::printf("MIMOBOX_EXIT=%d\n", code);
        std::fflush(stdout);
        return code;
    }
    if (mode == "abort") std::abort();
    if (mode == "agent") {
        if (::fork() == 0) {
            ::execl("/init", "mimobox-agent", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (;;) ::wait(nullptr);  // PID 1 reaps every orphan
    }
    if (mode.rfind("vsock-echo=", 0) == 0) vsock_server(static_cast<unsigned>(std::atoi(mode.c_str() + 11)), vsock_echo_connection);
    if (mode.rfind("vsock-bench=", 0) == 0) vsock_server(static_cast<unsigned>(std::atoi(mode.c_str() + 12)), vsock_bench_connection);
    if (mode.rfind("vsock-hello=", 0) == 0) {
        vsock_hello(static_cast<unsigned>(std::atoi(mode.c_str() + 12)));
        idle();
    }
    if (mode.rfind("vsock=", 0) == 0) {
        vsock_probe(static_cast<unsigned>(std::atoi(mode.c_str() + 6)));
        idle();
    }
    // Spins without a single exit to the VMM: only a signal gets its vCPU out of KVM_RUN.
    if (mode == "spin") {
        std::printf("MIMOBOX_SPINNING\n");
        std::fflush(stdout);
        for (;;) asm volatile("" ::: "memory");  // kept by the compiler, no instruction that exits
    }
    if (mode.rfind("mute-agent=", 0) == 0) mute_agent(52, std::atoi(mode.c_str() + 11), true);
    if (mode.rfind("hangup-agent=", 0) == 0) mute_agent(52, std::atoi(mode.c_str() + 13), false);
    if (mode == "reboot") {
        ::sync();
        ::reboot(RB_AUTOBOOT);
    }
    idle();
}
