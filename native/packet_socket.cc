// A syscall shim for AF_PACKET (STYLE.md rule 5): open a raw packet socket bound to one
// interface, send a frame that TypeScript built, read an interface's MAC, close. Nothing here
// knows ARP or NDP. Every call is one or two synchronous syscalls (none of them blocks: a send on
// a packet socket only queues the frame), and every failure throws an Error carrying `errno`,
// `code` and `syscall`; src/vip/packet-socket.ts turns it into a typed error.

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

// Throws Error{message, errno, code, syscall} for `err` and returns nullptr for the caller to return.
napi_value ThrowErrno(napi_env env, int err, const char* syscall) {
  const char* name = nullptr;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  name = strerrorname_np(err);
#endif
  char text[256];
  snprintf(text, sizeof text, "%s failed: %s", syscall, strerror(err));
  napi_value message, error, value;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, nullptr, message, &error);
  napi_create_int32(env, err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  if (name != nullptr) {
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, error, "code", value);
  }
  napi_throw(env, error);
  return nullptr;
}

// Argument checks: a wrong type is a bug in packet-socket.ts, reported as a TypeError.
bool GetArgs(napi_env env, napi_callback_info info, size_t count, napi_value* argv) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < count) {
    napi_throw_type_error(env, nullptr, "too few arguments");
    return false;
  }
  return true;
}

bool GetInterfaceName(napi_env env, napi_value value, char (&name)[IF_NAMESIZE]) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, nullptr, 0, &length) != napi_ok) {
    napi_throw_type_error(env, nullptr, "interface name must be a string");
    return false;
  }
  if (length == 0 || length >= IF_NAMESIZE) {
    napi_throw_type_error(env, nullptr, "interface name must be 1 to 15 bytes");
    return false;
  }
  napi_get_value_string_utf8(env, value, name, sizeof name, &length);
  return true;
}

bool GetInt32(napi_env env, napi_value value, int32_t* out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) {
    napi_throw_type_error(env, nullptr, "expected a number");
    return false;
  }
  return true;
}

napi_value Int32(napi_env env, int32_t n) {
  napi_value value;
  napi_create_int32(env, n, &value);
  return value;
}

// open(ifname, protocol) → fd: socket(AF_PACKET, SOCK_RAW) bound to the interface and protocol.
napi_value Open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[IF_NAMESIZE];
  int32_t protocol;
  if (!GetArgs(env, info, 2, argv) || !GetInterfaceName(env, argv[0], name) || !GetInt32(env, argv[1], &protocol)) return nullptr;
  if (protocol < 0 || protocol > 0xffff) {
    napi_throw_range_error(env, nullptr, "protocol must be 0..65535");
    return nullptr;
  }
  unsigned int index = if_nametoindex(name);
  if (index == 0) return ThrowErrno(env, errno, "if_nametoindex");
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(static_cast<uint16_t>(protocol)));
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  struct sockaddr_ll address;
  memset(&address, 0, sizeof address);
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(static_cast<uint16_t>(protocol));
  address.sll_ifindex = static_cast<int>(index);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof address) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "bind");
  }
  return Int32(env, fd);
}

// send(fd, frame) → bytes sent. The frame is a whole Ethernet frame, header included.
napi_value Send(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  if (!GetArgs(env, info, 2, argv) || !GetInt32(env, argv[0], &fd)) return nullptr;
  bool isTypedArray = false;
  napi_is_typedarray(env, argv[1], &isTypedArray);
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!isTypedArray || napi_get_typedarray_info(env, argv[1], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, nullptr, "frame must be a Uint8Array");
    return nullptr;
  }
  ssize_t sent = send(fd, data, length, MSG_DONTWAIT);
  if (sent < 0) return ThrowErrno(env, errno, "send");
  return Int32(env, static_cast<int32_t>(sent));
}

// hardwareAddress(ifname) → Uint8Array(6), via SIOCGIFHWADDR.
napi_value HardwareAddress(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char name[IF_NAMESIZE];
  if (!GetArgs(env, info, 1, argv) || !GetInterfaceName(env, argv[0], name)) return nullptr;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  struct ifreq request;
  memset(&request, 0, sizeof request);
  memcpy(request.ifr_name, name, sizeof name);
  int result = ioctl(fd, SIOCGIFHWADDR, &request);
  int err = errno;
  close(fd);
  if (result != 0) return ThrowErrno(env, err, "ioctl");
  void* bytes = nullptr;
  napi_value buffer, array;
  napi_create_arraybuffer(env, 6, &bytes, &buffer);
  memcpy(bytes, request.ifr_hwaddr.sa_data, 6);
  napi_create_typedarray(env, napi_uint8_array, 6, buffer, 0, &array);
  return array;
}

napi_value Close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!GetArgs(env, info, 1, argv) || !GetInt32(env, argv[0], &fd)) return nullptr;
  if (close(fd) != 0) return ThrowErrno(env, errno, "close");
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"open", nullptr, Open, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"send", nullptr, Send, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"hardwareAddress", nullptr, HardwareAddress, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
