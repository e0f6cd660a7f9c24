// Unit tests of the ttrpc server and client (shim/ttrpc/server.h, client.h): dispatch, errors, bounds, concurrency, cancellation.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "config/base/unique_fd.h"
#include "shim/ttrpc/client.h"
#include "shim/ttrpc/envelope.h"
#include "shim/ttrpc/frame.h"
#include "shim/ttrpc/frame_io.h"
#include "shim/ttrpc/server.h"
#include "shim/ttrpc/unix_socket.h"
#include "test/fakes/gate.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::ttrpc {
namespace {

using base::UniqueFd;

constexpr char kService[] = "test.Echo";

// A server on a socket in the scratch dir, serving on its own thread.
class TtrpcServerTest : public testing::ScratchDirTest {
 protected:
  void StartServer(ServerOptions options = {}) {
    server_ = std::make_unique<Server>(options);
    server_->Register(kService, "Echo", [](const CallContext&, std::string_view p) -> absl::StatusOr<std::string> {
      return std::string(p);
    });
    server_->Register(kService, "Fail", [](const CallContext&, std::string_view) -> absl::StatusOr<std::string> {
      return absl::NotFoundError("task \"x\" not found");
    });
    server_->Register(kService, "Held", [this](const CallContext&, std::string_view p) -> absl::StatusOr<std::string> {
      gate_.Pass();
      return std::string(p);
    });
    // Waits until its connection is cancelled, as a Task Wait does.
    server_->Register(kService, "WaitCancel", [this](const CallContext& ctx, std::string_view) -> absl::StatusOr<std::string> {
      absl::Notification cancelled;
      CancelSubscription sub(ctx.cancel, [&] { cancelled.Notify(); });
      waiting_.fetch_add(1);
      cancelled.WaitForNotification();
      cancelled_calls_.fetch_add(1);
      return absl::CancelledError("cancelled");
    });
    server_->Register(kService, "Context", [](const CallContext& ctx, std::string_view) -> absl::StatusOr<std::string> {
      std::string out = absl::StrCat(ctx.service, "/", ctx.method, " stream=", ctx.stream_id,
                                     " deadline=", ctx.deadline == absl::InfiniteFuture() ? "none" : "set");
      for (const auto& [k, v] : ctx.metadata) absl::StrAppend(&out, " ", k, "=", v);
      return out;
    });
    path_ = (dir_ / "ttrpc.sock").string();
    absl::StatusOr<UniqueFd> listener = ListenUnix(path_, 0600);
    ASSERT_TRUE(listener.ok()) << listener.status();
    serve_ = std::thread([this, fd = std::move(*listener)]() mutable { serve_status_ = server_->Serve(std::move(fd)); });
  }

  void TearDown() override {
    gate_.Open();
    if (server_) {
      server_->Shutdown();
      serve_.join();
      EXPECT_TRUE(serve_status_.ok()) << serve_status_;
    }
    ScratchDirTest::TearDown();
  }

  std::unique_ptr<Client> Dial() {
    absl::StatusOr<std::unique_ptr<Client>> c = Client::Dial(path_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  UniqueFd RawConnection() {
    absl::StatusOr<UniqueFd> fd = ConnectUnix(path_);
    EXPECT_TRUE(fd.ok()) << fd.status();
    return fd.ok() ? std::move(*fd) : UniqueFd();
  }

  static std::string RequestData(std::string_view method, std::string_view payload) {
    pb::Request req;
    req.set_service(kService);
    req.set_method(std::string(method));
    req.set_payload(std::string(payload));
    return req.SerializeAsString();
  }

  // The next frame on a raw connection, decoded as a Response.
  static std::pair<uint32_t, pb::Response> ReadResponse(int fd) {
    FrameReader reader(fd);
    absl::StatusOr<ReadResult> r = reader.Next();
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome, ReadOutcome::kFrame);
    EXPECT_EQ(r->frame.header.type, kTypeResponse);
    pb::Response resp;
    EXPECT_TRUE(resp.ParseFromString(r->frame.data));
    return {r->frame.header.stream_id, resp};
  }

  std::unique_ptr<Server> server_;
  std::thread serve_;
  absl::Status serve_status_;
  std::string path_;
  kvcri::testing::Gate gate_;
  std::atomic<int> waiting_{0};
  std::atomic<int> cancelled_calls_{0};
};

TEST_F(TtrpcServerTest, AnswersAUnaryCallWithItsReply) {
  StartServer();
  auto client = Dial();
  absl::StatusOr<std::string> reply = client->Call(kService, "Echo", "hello");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "hello");
  // An empty message is a valid reply.
  reply = client->Call(kService, "Echo", "");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "");
}

TEST_F(TtrpcServerTest, UnknownServiceAndMethodAreUnimplementedAsTtrpcSaysThem) {
  StartServer();
  auto client = Dial();
  absl::StatusOr<std::string> r = client->Call("containerd.task.v2.Nope", "Create", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(r.status().message(), "service containerd.task.v2.Nope");
  r = client->Call(kService, "Nope", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(r.status().message(), "method Nope");
}

TEST_F(TtrpcServerTest, AHandlersErrorReachesTheCallerWithItsCodeAndMessage) {
  StartServer();
  auto client = Dial();
  absl::StatusOr<std::string> r = client->Call(kService, "Fail", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "task \"x\" not found");
}

TEST_F(TtrpcServerTest, TheContextCarriesServiceMethodStreamDeadlineAndMetadata) {
  StartServer();
  UniqueFd fd = RawConnection();
  pb::Request req;
  req.set_service(kService);
  req.set_method("Context");
  req.set_timeout_nano(5'000'000'000);
  auto* kv = req.add_metadata();
  kv->set_key("containerd-namespace-ttrpc");
  kv->set_value("k8s.io");
  ASSERT_TRUE(WriteFrame(fd.get(), 7, kTypeRequest, 0, req.SerializeAsString()).ok());
  auto [id, resp] = ReadResponse(fd.get());
  EXPECT_EQ(id, 7u);
  EXPECT_TRUE(StatusOf(resp).ok());
  EXPECT_EQ(resp.payload(), "test.Echo/Context stream=7 deadline=set containerd-namespace-ttrpc=k8s.io");
}

TEST_F(TtrpcServerTest, AnEvenStreamIdIsRefusedOnThatId) {
  StartServer();
  UniqueFd fd = RawConnection();
  ASSERT_TRUE(WriteFrame(fd.get(), 8, kTypeRequest, 0, RequestData("Echo", "x")).ok());
  auto [id, resp] = ReadResponse(fd.get());
  EXPECT_EQ(id, 8u);
  EXPECT_EQ(StatusOf(resp).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusOf(resp).message(), "StreamID must be odd for client initiated streams");
}

TEST_F(TtrpcServerTest, AnOversizeFrameIsAnsweredResourceExhaustedAndTheConnectionGoesOn) {
  StartServer();
  UniqueFd fd = RawConnection();
  std::string big(kMaxDataLength + 1, 'x');
  // WriteFrame refuses to send it: write the header and data by hand.
  std::thread writer([&] {
    std::string frame = EncodeHeader({static_cast<uint32_t>(big.size()), 9, kTypeRequest, 0}) + big;
    std::string_view rest = frame;
    while (!rest.empty()) {
      ssize_t n = ::send(fd.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      rest.remove_prefix(static_cast<size_t>(n));
    }
  });
  auto [id, resp] = ReadResponse(fd.get());
  writer.join();
  EXPECT_EQ(id, 9u);
  EXPECT_EQ(StatusOf(resp).code(), absl::StatusCode::kResourceExhausted);
  // Still in sync: the next request is answered.
  ASSERT_TRUE(WriteFrame(fd.get(), 11, kTypeRequest, 0, RequestData("Echo", "after")).ok());
  auto [id2, resp2] = ReadResponse(fd.get());
  EXPECT_EQ(id2, 11u);
  EXPECT_EQ(resp2.payload(), "after");
}

TEST_F(TtrpcServerTest, AnUnparsableRequestIsInvalidArgumentAndUnknownFrameTypesAreSkipped) {
  StartServer();
  UniqueFd fd = RawConnection();
  ASSERT_TRUE(WriteFrame(fd.get(), 1, kTypeRequest, 0, "\xff\xff\xff").ok());
  auto [id, resp] = ReadResponse(fd.get());
  EXPECT_EQ(id, 1u);
  EXPECT_EQ(StatusOf(resp).code(), absl::StatusCode::kInvalidArgument);
  // A frame of type 7 and a stray Response: skipped without an answer.
  ASSERT_TRUE(WriteFrame(fd.get(), 3, 7, 0, "future").ok());
  ASSERT_TRUE(WriteFrame(fd.get(), 5, kTypeResponse, 0, "").ok());
  ASSERT_TRUE(WriteFrame(fd.get(), 7, kTypeRequest, 0, RequestData("Echo", "still here")).ok());
  auto [id2, resp2] = ReadResponse(fd.get());
  EXPECT_EQ(id2, 7u);
  EXPECT_EQ(resp2.payload(), "still here");
}

TEST_F(TtrpcServerTest, AStreamingRequestIsUnimplemented) {
  StartServer();
  UniqueFd fd = RawConnection();
  ASSERT_TRUE(WriteFrame(fd.get(), 1, kTypeRequest, kFlagRemoteOpen, RequestData("Echo", "x")).ok());
  auto [id, resp] = ReadResponse(fd.get());
  EXPECT_EQ(id, 1u);
  EXPECT_EQ(StatusOf(resp).code(), absl::StatusCode::kUnimplemented);
}

TEST_F(TtrpcServerTest, ATruncatedFrameClosesThatConnectionOnly) {
  StartServer();
  auto other = Dial();
  UniqueFd fd = RawConnection();
  // A header announcing 100 bytes, 3 of them, then the end.
  std::string partial = EncodeHeader({100, 1, kTypeRequest, 0}) + "abc";
  ASSERT_EQ(::send(fd.get(), partial.data(), partial.size(), MSG_NOSIGNAL), static_cast<ssize_t>(partial.size()));
  ::shutdown(fd.get(), SHUT_WR);
  char byte;
  EXPECT_EQ(::read(fd.get(), &byte, 1), 0) << "the server closes the connection";
  absl::StatusOr<std::string> r = other->Call(kService, "Echo", "fine");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "fine");
}

TEST_F(TtrpcServerTest, ConcurrentCallsOnOneClientGetTheirOwnReplies) {
  StartServer();
  auto client = Dial();
  constexpr int kThreads = 16, kCalls = 50;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        std::string payload = absl::StrCat("thread ", t, " call ", i, std::string(static_cast<size_t>(i * 97), 'p'));
        absl::StatusOr<std::string> r = client->Call(kService, "Echo", payload);
        if (!r.ok()) {
          failed.fetch_add(1);
        } else if (*r != payload) {
          wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(TtrpcServerTest, ASlowCallDoesNotHoldBackTheNextOnTheSameConnection) {
  StartServer();
  auto client = Dial();
  gate_.Close();
  std::thread slow([&] {
    absl::StatusOr<std::string> r = client->Call(kService, "Held", "slow");
    EXPECT_TRUE(r.ok()) << r.status();
  });
  gate_.AwaitWaiting(1);
  absl::StatusOr<std::string> r = client->Call(kService, "Echo", "fast");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "fast");
  gate_.Open();
  slow.join();
}

TEST_F(TtrpcServerTest, CallsBeyondTheInFlightBoundAreRefusedAtOnce) {
  ServerOptions options;
  options.max_calls_per_connection = 4;
  StartServer(options);
  auto client = Dial();
  gate_.Close();
  std::vector<std::thread> held;
  for (int i = 0; i < 4; ++i) {
    held.emplace_back([&] { EXPECT_TRUE(client->Call(kService, "Held", "h").ok()); });
  }
  gate_.AwaitWaiting(4);
  absl::StatusOr<std::string> r = client->Call(kService, "Echo", "fifth");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  gate_.Open();
  for (auto& t : held) t.join();
  // Room again once they are done.
  r = client->Call(kService, "Echo", "later");
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST_F(TtrpcServerTest, ClosingTheConnectionCancelsItsCallsInFlight) {
  StartServer();
  auto client = Dial();
  std::thread waiter([&] {
    absl::StatusOr<std::string> r = client->Call(kService, "WaitCancel", "");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  });
  while (waiting_.load() < 1) absl::SleepFor(absl::Milliseconds(1));
  client->Close();
  waiter.join();
  while (cancelled_calls_.load() < 1) absl::SleepFor(absl::Milliseconds(1));
  // The server goes on serving others.
  auto other = Dial();
  EXPECT_TRUE(other->Call(kService, "Echo", "x").ok());
}

TEST_F(TtrpcServerTest, ShutdownCancelsWaitingCallsAndServeReturns) {
  StartServer();
  auto client = Dial();
  std::thread waiter([&] { EXPECT_FALSE(client->Call(kService, "WaitCancel", "").ok()); });
  while (waiting_.load() < 1) absl::SleepFor(absl::Milliseconds(1));
  server_->Shutdown();
  serve_.join();
  EXPECT_TRUE(serve_status_.ok()) << serve_status_;
  EXPECT_EQ(cancelled_calls_.load(), 1);
  waiter.join();
  server_.reset();  // TearDown has nothing left to stop
}

TEST_F(TtrpcServerTest, ConnectionsBeyondTheBoundAreClosed) {
  ServerOptions options;
  options.max_connections = 2;
  StartServer(options);
  auto a = Dial(), b = Dial();
  ASSERT_TRUE(a->Call(kService, "Echo", "a").ok());
  ASSERT_TRUE(b->Call(kService, "Echo", "b").ok());
  auto c = Dial();  // connect succeeds (the backlog), then the server closes it
  EXPECT_EQ(c->Call(kService, "Echo", "c").status().code(), absl::StatusCode::kUnavailable);
  // A closed connection frees its place.
  a.reset();
  while (server_->connections() > 1) absl::SleepFor(absl::Milliseconds(1));
  auto d = Dial();
  EXPECT_TRUE(d->Call(kService, "Echo", "d").ok());
}

TEST_F(TtrpcServerTest, AClientCallTimesOutAndALateReplyIsDropped) {
  StartServer();
  auto client = Dial();
  gate_.Close();
  absl::StatusOr<std::string> r = client->Call(kService, "Held", "late", absl::Milliseconds(50));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  gate_.Open();
  // The late reply to that stream is dropped; the next call gets its own.
  r = client->Call(kService, "Echo", "next");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "next");
}

TEST_F(TtrpcServerTest, CallsFailUnavailableOnceTheServerIsGone) {
  StartServer();
  auto client = Dial();
  ASSERT_TRUE(client->Call(kService, "Echo", "x").ok());
  server_->Shutdown();
  serve_.join();
  server_.reset();
  while (!client->closed()) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(client->Call(kService, "Echo", "y").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Client::Dial(path_).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(TtrpcServerTest, ATypedHandlerRefusesAPayloadThatDoesNotParse) {
  server_ = std::make_unique<Server>();
  server_->Register(kService, "Typed",
                    Typed<pb::KeyValue, pb::KeyValue>([](const CallContext&, const pb::KeyValue& in) -> absl::StatusOr<pb::KeyValue> {
                      pb::KeyValue out;
                      out.set_key(in.value());
                      out.set_value(in.key());
                      return out;
                    }));
  path_ = (dir_ / "typed.sock").string();
  absl::StatusOr<UniqueFd> listener = ListenUnix(path_, 0600);
  ASSERT_TRUE(listener.ok());
  serve_ = std::thread([this, fd = std::move(*listener)]() mutable { serve_status_ = server_->Serve(std::move(fd)); });
  auto client = Dial();
  pb::KeyValue in, out;
  in.set_key("k");
  in.set_value("v");
  ASSERT_TRUE(client->CallMessage(kService, "Typed", in, &out).ok());
  EXPECT_EQ(out.key(), "v");
  EXPECT_EQ(out.value(), "k");
  absl::StatusOr<std::string> r = client->Call(kService, "Typed", "\xff\xff");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "the payload of test.Echo/Typed does not parse");
}

TEST_F(TtrpcServerTest, ListenUnixSaysWhenThePathIsTaken) {
  StartServer();
  EXPECT_TRUE(UnixSocketAnswers(path_));
  EXPECT_EQ(ListenUnix(path_, 0600).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(UnixSocketAnswers((dir_ / "nobody.sock").string()));
}

TEST(TtrpcCancellation, SubscribersRunOnceAndLateSubscribersAtOnce) {
  Cancellation c;
  int runs = 0;
  uint64_t gone = c.Subscribe([&] { runs += 100; });
  c.Subscribe([&] { ++runs; });
  c.Unsubscribe(gone);
  c.Cancel();
  c.Cancel();
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(c.cancelled());
  c.Subscribe([&] { ++runs; });
  EXPECT_EQ(runs, 2);
}

}  // namespace
}  // namespace kvcri::shim::ttrpc
