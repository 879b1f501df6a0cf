%% Erlang processes on several schedulers: compute, allocate, ETS, sleep
%% (tools/realprogs/runtimes.sh).
-module(work).
-export([main/1]).
fib(N) when N < 2 -> N;
fib(N) -> fib(N-1) + fib(N-2).
loop(Deadline, Acc) ->
    case erlang:monotonic_time(millisecond) >= Deadline of
        true -> Acc;
        false ->
            _ = fib(18),
            _ = lists:seq(1, 2000),
            _ = ets:info(tab),
            timer:sleep(1),
            loop(Deadline, Acc + 1)
    end.
main([S]) ->
    Secs = list_to_integer(S),
    ets:new(tab, [named_table, public]),
    Deadline = erlang:monotonic_time(millisecond) + Secs * 1000,
    Self = self(),
    Pids = [spawn(fun() -> Self ! {done, loop(Deadline, 0) > 0} end) || _ <- lists:seq(1, 16)],
    Rs = [receive {done, R} -> R end || _ <- Pids],
    {ok, F} = file:read_file("/etc/hostname"),
    io:format("~p ~p ~p~n", [Rs, byte_size(F) > 0, fib(20)]),
    io:format("schedulers ~p~n", [erlang:system_info(schedulers_online)]),
    halt(0).
