using System.Text.Json.Nodes;

namespace SharpLens.Visualization;

/// <summary>
/// Interactive attention patterns for an <see cref="HtmlReport"/>, in the spirit of CircuitsVis's
/// <c>attention_patterns</c>: one button per head; a grid with destination tokens as rows and source tokens as
/// columns (hover a cell for destination, source and weight); a token strip where hovering a token colours the
/// tokens it attends to. Spaces, newlines and tabs in tokens are shown as ␣ ↵ ⇥.
/// </summary>
public sealed class AttentionView
{
    readonly List<(string Label, float[,] Pattern)> heads = [];

    /// <summary>Creates a view over <paramref name="tokens"/> (one string per position, e.g. from <c>ToStrTokens</c>).</summary>
    public AttentionView(string title, IReadOnlyList<string> tokens)
    {
        if (tokens.Count == 0) throw new SharpLensException($"Attention view '{title}' needs at least one token.");
        Title = title;
        Tokens = [.. tokens];
    }

    /// <summary>Title shown above the view.</summary>
    public string Title { get; }

    /// <summary>The tokens, one per position.</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>Labels of the heads added so far, in order.</summary>
    public IReadOnlyList<string> HeadLabels => [.. heads.Select(h => h.Label)];

    /// <summary>
    /// Adds a head, e.g. label "L5H1", with its pattern[destination, source] (TransformerLens's
    /// <c>blocks.{l}.attn.hook_pattern</c> for one batch item and head). Returns this view.
    /// </summary>
    public AttentionView AddHead(string label, float[,] pattern)
    {
        int n = Tokens.Count;
        if (pattern.GetLength(0) != n || pattern.GetLength(1) != n)
            throw new SharpLensException($"Attention view '{Title}', head '{label}': pattern is [{pattern.GetLength(0)}, {pattern.GetLength(1)}] but there are {n} tokens; it must be [{n}, {n}] (destination, source).");
        heads.Add((label, pattern));
        return this;
    }

    /// <summary>Adds every head of one layer from patterns[head, destination, source], labelled "L{layer}H{head}". Returns this view.</summary>
    public AttentionView AddLayer(int layer, float[,,] patterns)
    {
        for (int h = 0; h < patterns.GetLength(0); h++)
        {
            var p = new float[patterns.GetLength(1), patterns.GetLength(2)];
            for (int q = 0; q < p.GetLength(0); q++)
                for (int k = 0; k < p.GetLength(1); k++) p[q, k] = patterns[h, q, k];
            AddHead($"L{layer}H{h}", p);
        }
        return this;
    }

    /// <summary>The data the page script reads: {"tokens": [...], "heads": [{"label", "pattern": [[...]]}]}, HTML-safe.</summary>
    internal string ToJson()
    {
        if (heads.Count == 0) throw new SharpLensException($"Attention view '{Title}' has no heads; add some with AddHead or AddLayer.");
        var hs = new JsonArray();
        foreach (var (label, p) in heads)
        {
            var rows = new JsonArray();
            for (int q = 0; q < p.GetLength(0); q++)
            {
                var row = new JsonArray();
                for (int k = 0; k < p.GetLength(1); k++) row.Add(Plots.Number(p[q, k]));
                rows.Add(row);
            }
            hs.Add(new JsonObject { ["label"] = label, ["pattern"] = rows });
        }
        return new JsonObject { ["tokens"] = new JsonArray([.. Tokens.Select(t => (JsonNode)t)]), ["heads"] = hs }.ToJsonString();
    }

    /// <summary>
    /// The page script, included once per report. Tokens only ever reach the page through textContent, never
    /// innerHTML, and the data arrives as \u-escaped JSON, so token text cannot inject markup or script.
    /// </summary>
    internal const string Script = """
        window.slAttention = function (id, d) {
          var root = document.getElementById(id), head = 0;
          function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
          function vis(t) { return t.replace(/ /g, '\u2423').replace(/\n/g, '\u21b5').replace(/\t/g, '\u21e5'); }
          function shade(w) { return w == null ? '#ccc' : 'rgba(33,102,172,' + Math.max(0, Math.min(1, w)) + ')'; }
          function fmt(w) { return w == null ? 'n/a' : w.toFixed(4); }
          var toks = d.tokens.map(vis);
          var bar = el('div', 'sl-heads'), info = el('div', 'sl-info', 'Hover a cell or a token.');
          var grid = el('table', 'sl-grid'), strip = el('div', 'sl-strip');
          root.append(bar, info, grid, strip);
          function describe(q, k) {
            return d.heads[head].label + '  destination ' + toks[q] + ' [' + q + ']  \u2190  source ' + toks[k] + ' [' + k + ']  weight ' + fmt(d.heads[head].pattern[q][k]);
          }
          function paintStrip(q) {
            Array.prototype.forEach.call(strip.children, function (s, k) {
              var w = q == null ? 0 : d.heads[head].pattern[q][k];
              s.style.background = q == null ? '' : shade(w);
              s.style.color = w > 0.5 ? 'white' : '';
              s.classList.toggle('sl-cur', k === q);
            });
          }
          function show(i) {
            head = i;
            Array.prototype.forEach.call(bar.children, function (b, j) { b.classList.toggle('sl-on', j === i); });
            grid.replaceChildren();
            var hr = grid.insertRow();
            hr.append(el('th', 'sl-corner', 'dest \\ src'));
            toks.forEach(function (t) { hr.append(el('th', 'sl-src', t)); });
            d.heads[i].pattern.forEach(function (row, q) {
              var tr = grid.insertRow();
              tr.append(el('th', 'sl-dst', toks[q]));
              row.forEach(function (w, k) {
                var td = tr.insertCell();
                td.style.background = shade(w);
                td.title = describe(q, k);
                td.onmouseenter = function () { info.textContent = td.title; };
              });
            });
            paintStrip(null);
          }
          d.heads.forEach(function (h, i) {
            var b = el('button', '', h.label);
            b.type = 'button';
            b.onclick = function () { show(i); };
            bar.append(b);
          });
          toks.forEach(function (t, q) {
            var s = el('span', 'sl-tok', t);
            s.onmouseenter = function () { paintStrip(q); info.textContent = d.heads[head].label + '  destination ' + t + ' [' + q + ']: colour = attention to each source'; };
            s.onmouseleave = function () { paintStrip(null); };
            strip.append(s);
          });
          show(0);
        };
        """;
}
