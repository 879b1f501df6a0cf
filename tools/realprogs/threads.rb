# Threads that share a mutex-guarded counter and a queue: the results are
# the same however they interleave (tools/realprogs.sh, with and without
# the shim).
total = 0
lock = Mutex.new
q = Queue.new
workers = (1..8).map do |k|
  Thread.new do
    20_000.times { |i| lock.synchronize { total += (i * k) % 7 } }
    q << k * k
    k
  end
end
ids = workers.sum(&:value)
squares = 8.times.sum { q.pop }
puts "total=#{total} ids=#{ids} squares=#{squares}"
