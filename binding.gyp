{
  "targets": [
    {
      "target_name": "raftvip_packet",
      "sources": ["native/packet_socket.cc"],
      "cflags_cc": ["-Wall", "-Wextra"]
    }
  ]
}
