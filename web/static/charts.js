// Charts of /briefs and /trends, drawn by ECharts (/static/vendor/echarts.min.js).
// The figures come from the server in #charts' data-charts attribute (JSON, a
// list of specs made by web/routes/trends.py chart_specs): the CSP allows no
// inline script, and the page draws nothing it was not given.
(function () {
  'use strict';
  var root = document.getElementById('charts');
  if (!root || typeof echarts === 'undefined') { return; }
  var specs = JSON.parse(root.dataset.charts || '[]');
  var FONT = '"Noto Sans CJK SC","Microsoft YaHei","PingFang SC","Yuqing Sans SC",sans-serif';
  var KIND_COLORS = ['#1565c0', '#43a047', '#fb8c00', '#8e24aa', '#00897b', '#6d4c41'];

  function base(spec) {
    return {
      textStyle: {fontFamily: FONT},
      title: {text: spec.title, left: 'center', textStyle: {fontSize: 14, fontFamily: FONT}},
      // richText: the tooltip is drawn in the canvas, not as HTML with inline styles (CSP).
      tooltip: {trigger: 'axis', renderMode: 'richText', axisPointer: {type: 'shadow'}},
      grid: {left: 12, right: 28, top: 44, bottom: 28, containLabel: true},
      animation: false
    };
  }

  function volume(spec) {
    var o = base(spec);
    o.color = KIND_COLORS;
    o.legend = {type: 'scroll', bottom: 0, textStyle: {fontFamily: FONT}};
    o.grid.bottom = 36;
    o.xAxis = {type: 'category', data: spec.labels};
    // Head room above the highest bar for the spike pins.
    o.yAxis = {type: 'value', minInterval: 1, name: '数量', boundaryGap: [0, '25%']};
    o.series = spec.series.map(function (s) {
      return {name: s.name, type: 'bar', stack: 'posts', data: s.data};
    });
    o.series.push({
      name: '帖文合计', type: 'line', data: spec.total, symbol: 'none', lineStyle: {width: 1, color: '#90a4ae'},
      itemStyle: {color: '#90a4ae'},
      markPoint: {
        symbol: 'pin', symbolSize: 44, itemStyle: {color: '#c62828'}, label: {fontFamily: FONT, fontSize: 10},
        data: spec.spikes.map(function (x) {
          return {name: '突增 ' + x.place, coord: [spec.labels[x.bucket], spec.total[x.bucket]], value: '突增'};
        })
      }
    });
    o.series.push({name: '新发事件', type: 'line', data: spec.events, itemStyle: {color: '#c62828'},
                   lineStyle: {type: 'dashed'}});
    return o;
  }

  function bars(spec, width) {
    var o = base(spec);
    var horizontal = spec.kind === 'barh';
    // Every label shown; slanted when a narrow screen cannot hold them side by side.
    var slant = !horizontal && width < 80 * spec.labels.length ? 30 : 0;
    var cat = {type: 'category', data: horizontal ? spec.labels.slice().reverse() : spec.labels,
               axisLabel: {interval: 0, rotate: slant, fontFamily: FONT}};
    var val = {type: 'value', minInterval: spec.unit === '%' ? 0 : 1, max: spec.unit === '%' ? 100 : null};
    o.xAxis = horizontal ? val : cat;
    o.yAxis = horizontal ? cat : val;
    o.series = [{
      name: spec.title, type: 'bar', data: horizontal ? spec.values.slice().reverse() : spec.values,
      itemStyle: {color: spec.color}, barMaxWidth: 48,
      label: {show: true, position: horizontal ? 'right' : 'top', fontFamily: FONT,
              formatter: spec.unit === '%' ? '{c}%' : '{c}'}
    }];
    if (!spec.values.length || spec.values.every(function (v) { return !v; })) {
      o.graphic = {type: 'text', left: 'center', top: 'middle', style: {text: '无数据', fill: '#999', font: '14px ' + FONT}};
    }
    return o;
  }

  var drawn = [];
  specs.forEach(function (spec) {
    var el = document.createElement('div');
    el.id = spec.id;
    el.className = 'chart' + (spec.kind === 'volume' ? ' wide' : '');
    el.setAttribute('role', 'img');
    el.setAttribute('aria-label', spec.title);
    root.appendChild(el);
    var chart = echarts.init(el, null, {renderer: 'canvas'});
    var option = spec.kind === 'volume' ? volume(spec) : bars(spec, el.clientWidth);
    chart.setOption(option);
    el.dataset.rendered = '1';
    drawn.push({chart: chart, option: option});
  });
  root.dataset.ready = String(drawn.length);
  window.addEventListener('resize', function () { drawn.forEach(function (d) { d.chart.resize(); }); });
  // The canvas keeps the glyphs of whichever font was there when it drew: once the page's
  // (possibly downloaded) Chinese font is in, draw again.
  if (document.fonts && document.fonts.ready) {
    document.fonts.ready.then(function () {
      drawn.forEach(function (d) { d.chart.clear(); d.chart.setOption(d.option); });
    });
  }
}());
