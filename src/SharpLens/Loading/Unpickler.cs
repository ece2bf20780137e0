using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace SharpLens.Loading;

/// <summary>A global the pickle names but that is not called (a class used as a marker, e.g. <c>torch.FloatStorage</c>).</summary>
internal sealed record PickleGlobal(string Module, string Name)
{
    public override string ToString() => $"{Module}.{Name}";
}

/// <summary>
/// A small pickle virtual machine for what torch.save writes (protocol 2, plus the protocol 3–5 opcodes that are
/// trivial to support). Values: null, bool, long, BigInteger (only if too large for long), double, string,
/// byte[], object?[] (tuple), List&lt;object?&gt;, OrderedDictionary&lt;object, object?&gt;. Globals are resolved
/// by <c>findGlobal</c> (to a callable <c>Func&lt;object?[], object?&gt;</c> or a marker), persistent ids by
/// <c>persistentLoad</c>. Nothing else is ever instantiated, so untrusted files cannot run code.
/// </summary>
internal sealed class Unpickler(byte[] data, string what, Func<string, string, object> findGlobal, Func<object?, object?> persistentLoad)
{
    private static readonly object Mark = new();
    private readonly List<object?> _stack = [];
    private readonly Dictionary<long, object?> _memo = [];
    private int _pos;

    public object? Load()
    {
        while (true)
        {
            int at = _pos;
            byte op = U8();
            switch (op)
            {
                case 0x80: U8(); break; // PROTO
                case 0x95: Bytes(8); break; // FRAME: framing is only a read-ahead hint
                case (byte)'.': return Pop(); // STOP
                case (byte)'(': Push(Mark); break; // MARK
                case (byte)'0': Pop(); break; // POP
                case (byte)'1': PopMark(); break; // POP_MARK
                case (byte)'2': Push(Peek()); break; // DUP
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break; // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))); break; // BININT
                case (byte)'K': Push((long)U8()); break; // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2))); break; // BININT2
                case 0x8a: Push(Long(U8())); break; // LONG1
                case 0x8b: Push(Long(Len(BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))))); break; // LONG4
                case (byte)'I': Push(TextInt(Line(), at)); break; // INT (protocol 0)
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break; // BINFLOAT
                case (byte)'X': Push(Utf8(Len(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))))); break; // BINUNICODE
                case 0x8c: Push(Utf8(U8())); break; // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(Len((long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8)), long.MaxValue)))); break; // BINUNICODE8
                // Python-2 str: torch.load decodes these with encoding='utf-8', so they become strings.
                case (byte)'U': Push(Utf8(U8())); break; // SHORT_BINSTRING
                case (byte)'T': Push(Utf8(Len(BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))))); break; // BINSTRING
                case (byte)'C': Push(Bytes(U8()).ToArray()); break; // SHORT_BINBYTES
                case (byte)'B': Push(Bytes(Len(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))).ToArray()); break; // BINBYTES
                case (byte)')': Push(Array.Empty<object?>()); break; // EMPTY_TUPLE
                case (byte)'t': Push(PopMark().ToArray()); break; // TUPLE
                case 0x85: Push(PopN(1)); break; // TUPLE1
                case 0x86: Push(PopN(2)); break; // TUPLE2
                case 0x87: Push(PopN(3)); break; // TUPLE3
                case (byte)']': Push(new List<object?>()); break; // EMPTY_LIST
                case (byte)'l': Push(PopMark()); break; // LIST
                case (byte)'a': { var x = Pop(); ListAt(at).Add(x); break; } // APPEND
                case (byte)'e': { var xs = PopMark(); ListAt(at).AddRange(xs); break; } // APPENDS
                case (byte)'}': Push(new OrderedDictionary<object, object?>()); break; // EMPTY_DICT
                case (byte)'d': { var d = new OrderedDictionary<object, object?>(); SetItems(d, PopMark(), at); Push(d); break; } // DICT
                case (byte)'s': { var v = Pop(); var k = Pop(); SetItems(DictAt(at), [k, v], at); break; } // SETITEM
                case (byte)'u': { var kvs = PopMark(); SetItems(DictAt(at), kvs, at); break; } // SETITEMS
                case (byte)'c': { string m = Line(), n = Line(); Push(findGlobal(m, n)); break; } // GLOBAL
                case 0x93: { var n = Pop(); var m = Pop(); Push(findGlobal(Str(m, at), Str(n, at))); break; } // STACK_GLOBAL
                case (byte)'R': { var args = Pop(); Push(Call(Pop(), args, at)); break; } // REDUCE
                case 0x81: { var args = Pop(); Push(Call(Pop(), args, at)); break; } // NEWOBJ
                case (byte)'b': Pop(); break; // BUILD: state only sets attributes (e.g. OrderedDict._metadata), which we do not need
                case (byte)'q': _memo[U8()] = Peek(); break; // BINPUT
                case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))] = Peek(); break; // LONG_BINPUT
                case 0x94: _memo[_memo.Count] = Peek(); break; // MEMOIZE
                case (byte)'p': _memo[TextLong(Line(), at)] = Peek(); break; // PUT
                case (byte)'h': Push(Memo(U8(), at)); break; // BINGET
                case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)), at)); break; // LONG_BINGET
                case (byte)'g': Push(Memo(TextLong(Line(), at), at)); break; // GET
                case (byte)'Q': Push(persistentLoad(Pop())); break; // BINPERSID
                case (byte)'P': Push(persistentLoad(Line())); break; // PERSID
                default: throw Error(at, $"unsupported pickle opcode 0x{op:x2}" + (op is >= 0x20 and < 0x7f ? $" ('{(char)op}')" : ""));
            }
        }
    }

    private SafetensorsFormatException Error(int at, string what_) => new($"{what}: {what_} at byte {at} of the pickle.");

    private byte U8() => _pos < data.Length ? data[_pos++] : throw Error(_pos, "pickle ends before STOP");

    private ReadOnlySpan<byte> Bytes(int n)
    {
        if (n < 0 || _pos + (long)n > data.Length) throw Error(_pos, "pickle ends in the middle of a value");
        _pos += n;
        return data.AsSpan(_pos - n, n);
    }

    private int Len(long n) => n is >= 0 and <= int.MaxValue ? (int)n : throw Error(_pos, $"length {n} out of range");

    private string Utf8(int n) => Encoding.UTF8.GetString(Bytes(n));

    private string Line()
    {
        int end = Array.IndexOf(data, (byte)'\n', _pos);
        if (end < 0) throw Error(_pos, "pickle ends in the middle of a text line");
        var s = Encoding.UTF8.GetString(data, _pos, end - _pos);
        _pos = end + 1;
        return s;
    }

    private object Long(int n)
    {
        var v = new BigInteger(Bytes(n), isUnsigned: false, isBigEndian: false);
        return v >= long.MinValue && v <= long.MaxValue ? (long)v : v;
    }

    private object TextInt(string s, int at) => s switch { "00" => false, "01" => true, _ => TextLong(s, at) };

    private long TextLong(string s, int at) =>
        long.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v
        : throw Error(at, $"expected a decimal integer on a text line, got {s.Length} characters that are not one");

    private void Push(object? x) => _stack.Add(x);

    private object? Peek() => _stack.Count > 0 && _stack[^1] != Mark ? _stack[^1] : throw Error(_pos, "stack underflow");

    private object? Pop()
    {
        var x = Peek();
        _stack.RemoveAt(_stack.Count - 1);
        return x;
    }

    private object?[] PopN(int n)
    {
        var r = new object?[n];
        for (int i = n - 1; i >= 0; i--) r[i] = Pop();
        return r;
    }

    private List<object?> PopMark()
    {
        int m = _stack.LastIndexOf(Mark);
        if (m < 0) throw Error(_pos, "no MARK on the stack");
        var items = _stack.GetRange(m + 1, _stack.Count - m - 1);
        _stack.RemoveRange(m, _stack.Count - m);
        return items;
    }

    private object? Memo(long key, int at) => _memo.TryGetValue(key, out var v) ? v : throw Error(at, $"memo key {key} was never stored");

    private List<object?> ListAt(int at) => Peek() as List<object?> ?? throw Error(at, $"APPEND to a {Describe(Peek())}, not a list");

    private OrderedDictionary<object, object?> DictAt(int at) =>
        Peek() as OrderedDictionary<object, object?> ?? throw Error(at, $"SETITEM on a {Describe(Peek())}, not a dict");

    private void SetItems(OrderedDictionary<object, object?> d, List<object?> kvs, int at)
    {
        if (kvs.Count % 2 != 0) throw Error(at, "odd number of items for a dict");
        for (int i = 0; i < kvs.Count; i += 2) d[kvs[i] ?? throw Error(at, "None as a dict key")] = kvs[i + 1];
    }

    private string Str(object? x, int at) => x as string ?? throw Error(at, $"expected a string, got {Describe(x)}");

    private object? Call(object? callable, object? args, int at) => callable switch
    {
        Func<object?[], object?> f => f(args as object?[] ?? throw Error(at, $"call arguments must be a tuple, got {Describe(args)}")),
        _ => throw Error(at, $"cannot call {Describe(callable)}"),
    };

    public static string Describe(object? x) => x switch
    {
        null => "None",
        PickleGlobal g => $"global '{g}'",
        object?[] t => $"tuple of {t.Length}",
        _ => x.GetType().Name,
    };
}
